"""params.yaml → llm.* (stages `base-model`, `sft`, `dmpo`). Owned by the LLM engineer."""

from __future__ import annotations

from pydantic import Field

from .base import Strict


class SFTParams(Strict):
    max_steps: int = Field(30, ge=1)
    lr: float = Field(2e-4, gt=0)
    lora_r: int = Field(8, ge=1)


class LLMParams(Strict):
    base_model: str = "smollm2-135m-instruct-gguf"
    sft: SFTParams = SFTParams()
