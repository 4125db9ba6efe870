"""params.yaml → llm.* (stages `base-model`, `sft`; the DMPO branch in params/dmpo.py). Owned by the LLM engineer.

Defaults form the CPU profile (SmolLM2-135M, LoRA, a few minutes on 2 cores). The paper-scale
recipe (LLaMA-2-7B, full fine-tuning, lr 2e-5, 6000 steps, context 1024, DeepSpeed ZeRO-3) is
documented in docs/gpu.md and applied with `dvc exp run -S ...`.
"""

from __future__ import annotations

from pydantic import Field

from recranker.dmpo.config import DMPOSFTSettings
from recranker.llm.config import SFTSettings

from .base import Strict
from .dmpo import DMPOParams, PrefEvalParams


class TinyModelParams(Strict):
    """Shape of the randomly initialised model used when ``llm.base_model: tiny-random``."""

    hidden: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)


class SFTParams(SFTSettings):
    """llm.sft: the library's :class:`~recranker.llm.config.SFTSettings` and the stage's held-out split."""

    eval_fraction: float = Field(0.05, ge=0, lt=1)  # share of the instructions held out for the eval loss
    max_eval: int = Field(32, ge=0)  # at most this many held out


class LaunchParams(Strict):
    """How the training stages (sft, dmpo-sft, dmpo) start: one process, or ``processes`` ranks
    under torchrun (``config: null``) or ``accelerate launch --config_file <config>``."""

    processes: int = Field(1, ge=1)  # ranks on this machine (GPUs, or CPU processes with gloo)
    config: str | None = None  # an accelerate config (e.g. configs/accelerate_deepspeed_zero3.yaml)


class LLMParams(Strict):
    base_model: str = "smollm2-135m-instruct-gguf"  # or "tiny-random", a local dir, an HF hub id
    # A chat template for base models that have none (e.g. meta-llama/Llama-2-7b-hf): a name of
    # recranker.llm.templates ("llama-2", "chatml") or a Jinja file; null: the tokenizer's own.
    chat_template: str | None = None
    tiny: TinyModelParams = TinyModelParams()
    deepspeed: str | None = None  # GPU only, e.g. configs/deepspeed_zero3.json (docs/gpu.md)
    launch: LaunchParams = LaunchParams()
    sft: SFTParams = SFTParams()
    dmpo_sft: DMPOSFTSettings = DMPOSFTSettings()
    dmpo: DMPOParams = DMPOParams()
    pref_eval: PrefEvalParams = PrefEvalParams()
