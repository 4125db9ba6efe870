"""params.yaml → preferences, llm.dmpo_sft, llm.dmpo, llm.pref_eval: the DMPO branch
(stages `preferences`, `import-preferences`, `dmpo-sft`, `dmpo`, `pref-eval`, `pref-backbone`).

Nothing here is shared with RecRanker's `sft`/`rank`: a change to RecRanker params re-runs nothing
on the DMPO branch. Defaults = the CPU profile (SmolLM2-135M, LoRA on q, k, v as the paper).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from recranker.dmpo.config import DMPOSettings, PreferenceConfig
from recranker.llm.config import Precision

from .base import Strict


class ImportedPreferences(Strict):
    """One named preference dataset from LLaMA-Factory files (the DMPO authors' format), produced
    by the DVC stage `import-preferences@<name>`, whose dependency is the folder ``path``.
    Each role has its file kind: sft → ``sft``, train → ``dpo_ranking_k``, valid/test → ``eval``."""

    path: str  # folder holding the files (absolute, or relative to the project: git- or dvc-tracked)
    train: str  # dpo_ranking_k file in `path`: {"instruction","input","output": [chosen, rejected]}, k per sample
    k: int = Field(ge=1)  # the k of the train file: pairs (negatives) per sample, checked on every sample
    test: str  # eval file: "output" = the preferred order string, or [chosen, rejected]
    valid: str | None = None  # eval file, as test; None: no valid pairs
    sft: str | None = None  # sft file: "output" = the answer string; None: SFT on the train pairs' chosen orders

    @field_validator("train", "test", "valid", "sft")
    @classmethod
    def _a_file_name(cls, name: str | None) -> str | None:
        if name is not None and (not name or Path(name).is_absolute() or ".." in Path(name).parts):
            raise ValueError(f"'{name}' must be a file name inside `path`")
        return name


class PreferenceParams(PreferenceConfig):
    """preferences: the library's :class:`~recranker.dmpo.config.PreferenceConfig` and the stage's own knobs."""

    splits: list[Literal["train", "valid", "test"]] = Field(["train"], min_length=1)  # interactions used
    # Named datasets of LLaMA-Factory files, each produced by the DVC stage import-preferences@NAME
    # (usable in llm.dmpo.datasets and llm.pref_eval.datasets like a ratings dataset).
    imported: dict[str, ImportedPreferences] = {}

    @field_validator("imported")
    @classmethod
    def _names(cls, imported: dict[str, ImportedPreferences]) -> dict[str, ImportedPreferences]:
        import re

        bad = [n for n in imported if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", n)]
        if bad:  # the name is a folder (data/preferences/NAME) and a DVC stage name (import-preferences@NAME)
            raise ValueError(f"name '{bad[0]}': use letters, digits, '_' and '-' only")
        return imported


class DMPOParams(DMPOSettings):
    """llm.dmpo: the library's :class:`~recranker.dmpo.config.DMPOSettings` and the stage's own knobs."""

    datasets: list[str] = []  # preference data to train on (and dmpo-sft); [] = run.datasets
    max_train: int = Field(0, ge=0)  # 0: every preference sample
    # valid pairs scored after training (metrics/dmpo.json valid_auc): choose lr and steps on these
    valid_samples: int = Field(100, ge=0)


class PrefEvalParams(Strict):
    """Preference AUC on the test pairs. Model "sft" = DMPO's own SFT (models/llm/dmpo-sft)."""

    max_samples: int = Field(0, ge=0)  # 0: every test pair (the paper's 1,000)
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(1024, ge=16)
    models: list[Literal["base", "sft", "dmpo"]] = Field(["base", "sft", "dmpo"], min_length=1)
    # Answer score: the paper's mean token probability, or mean log-probability (geometric mean).
    score: Literal["mean_prob", "mean_logprob"] = "mean_prob"
    bootstrap: int = Field(1000, ge=0)  # resamples of the test records for the 95% intervals
    # Test preference data to evaluate on; [] = run.datasets. A dataset absent from the DMPO
    # training data (llm.dmpo.datasets) is reported as cross-domain.
    datasets: list[str] = []
    explain_samples: int = Field(3, ge=0)
    # bf16 body, fp32 final norm and LM head where bf16 is native; auto: as rank.dtype
    dtype: Precision = "auto"
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
