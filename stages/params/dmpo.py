"""params.yaml → preferences, llm.dmpo_sft, llm.dmpo, llm.pref_eval: the DMPO branch
(stages `preferences`, `import-preferences`, `dmpo-sft`, `dmpo`, `pref-eval`, `pref-backbone`).

Nothing here is shared with RecRanker's `sft`/`rank`: a change to RecRanker params re-runs nothing
on the DMPO branch. Defaults = the CPU profile (SmolLM2-135M, LoRA on q, k, v as the paper).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import Strict


class ImportedPreferences(Strict):
    """The DMPO authors' released files (LLaMA-Factory format) of one named preference dataset."""

    sft: str | None = None  # {"instruction","input","output": "<answer>"}; None: SFT on the train pairs
    train: str  # {"instruction","input","output": [chosen, rejected]}, k records per sample
    valid: str | None = None  # same format as train (or as test)
    test: str  # {"instruction","input","output": "<preferred order>"} (or [chosen, rejected])


class PreferenceParams(Strict):
    """DMPO few-shot samples (paper §4.1): train samples with k pairwise prompts; valid/test pairs."""

    positive_above: float = 3.0  # rating > this is positive, ≤ is negative
    min_positives: int = Field(5, ge=1)
    min_negatives: int = Field(5, ge=1)
    history_len: int = Field(40, ge=1)  # the paper's ≤ 40 items before the positive
    min_history: int = Field(1, ge=0)
    k_negatives: int = Field(3, ge=1)  # pairwise prompts per training sample (≥ llm.dmpo.k)
    n_train: int = Field(100, ge=0)
    n_valid: int = Field(100, ge=0)
    n_test: int = Field(1000, ge=0)
    test_per_user: int = Field(2, ge=1)  # test pairs per test user (latest positives first)
    splits: list[Literal["train", "valid", "test"]] = ["train"]  # interactions used
    max_title_chars: int = Field(100, ge=8)
    # Named datasets imported by `recranker import-preferences --name NAME` (usable in
    # llm.dmpo.datasets and llm.pref_eval.datasets like a ratings dataset).
    imported: dict[str, ImportedPreferences] = {}


class DMPOLoraParams(Strict):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj"]  # the paper's LoRA targets


class DMPOSFTParams(Strict):
    """TALLRec-style SFT on the DMPO training samples (answer "<positive, negative>")."""

    method: Literal["lora", "full"] = "lora"
    lora: DMPOLoraParams = DMPOLoraParams()
    max_steps: int = Field(40, ge=1)
    lr: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(2, ge=0)
    # batch 4 of ~540-token prompts peaked at 8.0 GiB (measured); 2 x 2 keeps the effective batch
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(2, ge=1)
    max_length: int = Field(1024, ge=16)  # refused, never truncated
    save_steps: int = Field(20, ge=1)
    logging_steps: int = Field(1, ge=1)
    bf16: bool = True


class DMPOParams(Strict):
    datasets: list[str] = []  # preference data to train on (and dmpo-sft); [] = run.datasets
    beta: float = Field(0.1, gt=0)  # trl default
    k: int = Field(3, ge=1)  # negatives (pairwise prompts) per sample, ≤ those present in the data
    max_steps: int = Field(25, ge=1)
    lr: float = Field(1e-4, gt=0)  # cosine decay; chosen on the valid pairs (README, DMPO)
    warmup_steps: int = Field(2, ge=0)
    batch_size: int = Field(1, ge=1)  # 2k sequences per sample: memory grows with batch_size·k
    grad_accum: int = Field(4, ge=1)
    max_length: int = Field(1024, ge=16)  # refused, never truncated
    max_train: int = Field(0, ge=0)  # 0: every preference sample
    # valid pairs scored after training (metrics/dmpo.json valid_auc): choose lr and steps on these
    valid_samples: int = Field(100, ge=0)
    save_steps: int = Field(10, ge=1)
    logging_steps: int = Field(1, ge=1)
    # Where policy and reference start: the DMPO-SFT model (models/llm/dmpo-sft), or the base model
    # with a fresh adapter shaped like llm.dmpo_sft.lora — the paper's "DMPO without SFT".
    init: Literal["sft", "base"] = "sft"
    precompute_ref: bool = True  # reference log-probs once, before training
    bf16: bool = True


class PrefEvalParams(Strict):
    """Preference AUC on the test pairs. Model "sft" = DMPO's own SFT (models/llm/dmpo-sft)."""

    max_samples: int = Field(0, ge=0)  # 0: every test pair (the paper's 1,000)
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(1024, ge=16)
    models: list[Literal["base", "sft", "dmpo"]] = ["base", "sft", "dmpo"]
    # Answer score: the paper's mean token probability, or mean log-probability (geometric mean).
    score: Literal["mean_prob", "mean_logprob"] = "mean_prob"
    bootstrap: int = Field(1000, ge=0)  # resamples of the test records for the 95% intervals
    # Test preference data to evaluate on; [] = run.datasets. A dataset absent from the DMPO
    # training data (llm.dmpo.datasets) is reported as cross-domain.
    datasets: list[str] = []
    explain_samples: int = Field(3, ge=0)
    # bf16 body, fp32 final norm and LM head (as rank.dtype)
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    # Conventional backbones scored on the same pairs (DMPO Table 2) by the stage `pref-backbone`:
    # each is trained by that stage with its backbone.<name> hyper-parameters on the leakage-free
    # data (the test users' interactions from their preference positive on removed). Empty = skip.
    backbones: list[str] = Field(default_factory=list)

    @field_validator("backbones")
    @classmethod
    def _known_backbones(cls, names: list[str]) -> list[str]:
        from recranker.backbones import MODELS

        unknown = [n for n in names if n not in MODELS]
        if unknown:
            raise ValueError(f"unknown backbone '{unknown[0]}' (known: {', '.join(MODELS)})")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"backbone '{twice[0]}' listed twice")
        return names
