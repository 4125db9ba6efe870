"""params.yaml → llm.* (stages `base-model`, `sft`; the DMPO branch in params/dmpo.py). Owned by the LLM engineer.

Defaults form the CPU profile (SmolLM2-135M, LoRA, a few minutes on 2 cores). The paper-scale
recipe (LLaMA-2-7B, full fine-tuning, lr 2e-5, 6000 steps, context 1024, DeepSpeed ZeRO-3) is
documented in docs/gpu.md and applied with `dvc exp run -S ...`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict
from .dmpo import DMPOParams, DMPOSFTParams, PrefEvalParams


class TinyModelParams(Strict):
    """Shape of the randomly initialised model used when ``llm.base_model: tiny-random``."""

    hidden: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)


class LoraParams(Strict):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class SFTParams(Strict):
    method: Literal["lora", "full"] = "lora"
    lora: LoraParams = LoraParams()
    max_steps: int = Field(30, ge=1)
    lr: float = Field(2e-4, gt=0)  # LoRA on CPU; full fine-tuning (paper) uses 2e-5
    warmup_steps: int = Field(3, ge=0)  # paper: 50 of 6000 (cosine)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(768, ge=16)  # listwise instructions (10 candidates, 10-item history) reach ~670 tokens
    eval_fraction: float = Field(0.05, ge=0, lt=1)
    max_eval: int = Field(32, ge=0)
    eval_steps: int = Field(0, ge=0)  # 0: evaluate only at the end
    save_steps: int = Field(10, ge=1)  # checkpoint interval (resume after interruption)
    logging_steps: int = Field(1, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    bf16: bool = False  # autocast; see benchmarks/training.py for the measured trade-off
    group_by_length: bool = True  # batches of similar lengths: less padding (listwise ~2x longer)


class LLMParams(Strict):
    base_model: str = "smollm2-135m-instruct-gguf"  # or "tiny-random", a local dir, an HF hub id
    tiny: TinyModelParams = TinyModelParams()
    deepspeed: str | None = None  # GPU only, e.g. configs/deepspeed_zero3.json (docs/gpu.md)
    sft: SFTParams = SFTParams()
    dmpo_sft: DMPOSFTParams = DMPOSFTParams()
    dmpo: DMPOParams = DMPOParams()
    pref_eval: PrefEvalParams = PrefEvalParams()
