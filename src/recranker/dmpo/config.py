"""The hyper-parameters of the DMPO branch, declared once: few-shot samples (:class:`PreferenceConfig`,
params.yaml ``preferences``), DMPO's TALLRec-style SFT (:class:`DMPOSFTSettings`, ``llm.dmpo_sft``)
and DMPO itself (:class:`DMPOSettings`, ``llm.dmpo``). Defaults = the CPU profile (SmolLM2-135M,
LoRA on q, k, v as the paper). Light on purpose (pydantic only): the params schema imports it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from recranker.llm.config import (
    BF16,
    BatchSize,
    GradAccum,
    LearningRate,
    LoggingSteps,
    LoraSettings,
    MaxLength,
    MaxSteps,
    Method,
    SaveSteps,
    TargetModules,
    TrainSettings,
    WarmupSteps,
    trainer_section,
)
from recranker.schema import Section


class PreferenceConfig(Section):
    """DMPO few-shot samples (paper §4.1): train samples with k pairwise prompts; valid/test pairs."""

    positive_above: float = Field(3.0, description="rating > this is positive, ≤ is negative")
    min_positives: int = Field(5, ge=1, description="positives a user needs to take part")
    min_negatives: int = Field(5, ge=1, description="negatives a user needs to take part")
    history_len: int = Field(10, ge=1, description="items before the positive in the prompt (≤ the paper's 40; 10 on CPU)")
    min_history: int = Field(1, ge=0, description="shortest history a sample may have")
    k_negatives: int = Field(3, ge=1, description="pairwise prompts per training sample (≥ llm.dmpo.k)")
    n_train: int = Field(100, ge=0, description="training samples (one per user)")
    n_valid: int = Field(100, ge=0, description="valid pairs (one per user)")
    n_test: int = Field(1000, ge=0, description="test pairs (users from the back of the seeded order)")
    test_per_user: int = Field(2, ge=1, description="test pairs per test user (latest positives first)")
    max_title_chars: int = Field(100, ge=8, description="titles longer than this are cut")


class DMPOLoraSettings(LoraSettings):
    """DMPO's adapter: the paper's LoRA targets (q, k, v)."""

    target_modules: TargetModules = Field(["q_proj", "k_proj", "v_proj"])


@trainer_section
class DMPOSFTSettings(TrainSettings):
    """TALLRec-style SFT on the DMPO training samples (answer "<positive, negative>"), ``llm.dmpo_sft``."""

    method: Method = "lora"
    lora: DMPOLoraSettings = DMPOLoraSettings()
    max_steps: MaxSteps = 40
    lr: LearningRate = 3e-4
    warmup_steps: WarmupSteps = 2
    # batch 4 of ~540-token prompts peaked at 8.0 GiB (measured); 2 x 2 keeps the effective batch
    batch_size: BatchSize = 2
    grad_accum: GradAccum = 2
    max_length: MaxLength = 1024
    save_steps: SaveSteps = 20
    logging_steps: LoggingSteps = 1
    bf16: BF16 = "auto"
    # fixed, not knobs of this section
    eval_steps: ClassVar[int] = 0
    weight_decay: ClassVar[float] = 0.0
    group_by_length: ClassVar[bool] = False
    loss_average: ClassVar[Literal["token", "instruction"]] = "token"  # trl's token mean


@trainer_section
class DMPOSettings(TrainSettings):
    """Direct multi-negative preference optimisation (``llm.dmpo``) from the DMPO-SFT model."""

    beta: float = Field(0.1, gt=0, description="β of the loss (trl's default)")
    k: int = Field(3, ge=1, description="negatives (pairwise prompts) per sample, ≤ those present in the data")
    max_steps: MaxSteps = 50
    lr: LearningRate = 1e-3  # lr and max_steps chosen on the valid pairs (README, DMPO)
    warmup_steps: WarmupSteps = 2
    batch_size: BatchSize = 1  # 2k sequences per sample: memory grows with batch_size·k
    grad_accum: GradAccum = 4
    max_length: MaxLength = 1024
    save_steps: SaveSteps = 10
    logging_steps: LoggingSteps = 1
    # Where policy and reference start: the DMPO-SFT model (models/llm/dmpo-sft), or the base model
    # with a fresh adapter (:meth:`with_run`'s ``lora``) — the paper's "DMPO without SFT".
    init: Literal["sft", "base"] = Field("sft", description="start from the DMPO-SFT model or the base model")
    precompute_ref: bool = Field(True, description="reference log-probs once, before training (trl)")
    bf16: BF16 = "auto"
    # fixed, not knobs of this section
    eval_steps: ClassVar[int] = 0
    weight_decay: ClassVar[float] = 0.0
    group_by_length: ClassVar[bool] = False

    _lora: LoraSettings | None = PrivateAttr(None)

    def with_run(self, *, lora: LoraSettings | None = None, **context: Any):
        """As :meth:`TrainSettings.with_run`; ``lora``: the fresh adapter of ``init: base`` (the
        DMPO-SFT section's, ``llm.dmpo_sft.lora``), None for full fine-tuning."""
        out = super().with_run(**context)
        out._lora = lora
        return out

    @property
    def lora(self) -> LoraSettings | None:
        return self._lora
