"""params.yaml → llm.* (stages `base-model`, `sft`, `dmpo`, `pref-eval`). Owned by the LLM engineer.

Defaults form the CPU profile (SmolLM2-135M, LoRA, a few minutes on 2 cores). The paper-scale
recipe (LLaMA-2-7B, full fine-tuning, lr 2e-5, 6000 steps, context 1024, DeepSpeed ZeRO-3) is
documented in docs/gpu.md and applied with `dvc exp run -S ...`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import Strict


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


class DMPOParams(Strict):
    datasets: list[str] = []  # preference data to train on; [] = run.datasets
    beta: float = Field(0.1, gt=0)  # trl default
    k: int = Field(3, ge=1)  # negatives per sample (≤ those present in the data)
    max_steps: int = Field(20, ge=1)
    lr: float = Field(5e-5, gt=0)
    warmup_steps: int = Field(2, ge=0)
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=16)  # preference prompts (20-item history) are ~350 tokens
    max_train: int = Field(0, ge=0)  # 0: every preference sample
    save_steps: int = Field(10, ge=1)
    logging_steps: int = Field(1, ge=1)
    # Where policy and reference start: the SFT model, or the base model with a fresh adapter
    # shaped like llm.sft.lora (full fine-tuning if llm.sft.method is "full") — "without SFT".
    init: Literal["sft", "base"] = "sft"
    # autocast: 1.86x faster on this CPU, first-steps loss within .014 of fp32 (benchmarks/training.py)
    bf16: bool = True


class PrefEvalParams(Strict):
    """Preference AUC: score every candidate by its mean per-token log-probability."""

    max_samples: int = Field(50, ge=1)
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(512, ge=16)
    # "sft" alone is the TALLRec-style baseline (instruction tuning without preference optimisation).
    models: list[Literal["base", "sft", "dmpo"]] = ["base", "sft", "dmpo"]
    # Test preference data to evaluate on; [] = run.datasets. A dataset absent from the DMPO
    # training data (llm.dmpo.datasets) is reported as cross-domain.
    datasets: list[str] = []
    explain_samples: int = Field(3, ge=0)
    # bf16 body, fp32 final norm and LM head (as rank.dtype)
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    # Conventional backbones scored on the same pairs (DMPO Table 2) by the stage `pref-backbone`:
    # each is trained by that stage with its backbone.<name> hyper-parameters on the leakage-free
    # data (the test users' interactions from their preference positive on removed). Empty = skip,
    # because each one costs a backbone training run.
    backbones: list[str] = Field(default_factory=list)

    @field_validator("backbones")
    @classmethod
    def _known_backbones(cls, names: list[str]) -> list[str]:
        from .backbone import BACKBONES

        unknown = [n for n in names if n not in BACKBONES]
        if unknown:
            raise ValueError(f"unknown backbone '{unknown[0]}' (known: {', '.join(BACKBONES)})")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"backbone '{twice[0]}' listed twice")
        return names


class LLMParams(Strict):
    base_model: str = "smollm2-135m-instruct-gguf"  # or "tiny-random", a local dir, an HF hub id
    tiny: TinyModelParams = TinyModelParams()
    deepspeed: str | None = None  # GPU only, e.g. configs/deepspeed_zero3.json (docs/gpu.md)
    sft: SFTParams = SFTParams()
    dmpo: DMPOParams = DMPOParams()
    pref_eval: PrefEvalParams = PrefEvalParams()
