"""The one place that knows where DVC outputs live (mirrors dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
MODELS = Path("models")
METRICS = Path("metrics")


def downloads(dataset: str) -> Path:
    """Where downloaded official archives are kept (and unpacked); not a DVC output."""
    return DATA / "downloads" / dataset


def raw(dataset: str) -> Path:
    """The raw files `prepare` reads: stage `raw`'s copy of the source (a DVC output)."""
    return DATA / "raw" / dataset


def processed(dataset: str) -> Path:
    return DATA / "processed" / dataset


def backbone(dataset: str, name: str) -> Path:
    return MODELS / "backbones" / dataset / name


def sampled(dataset: str) -> Path:
    return DATA / "sampled" / dataset


def train_instructions(dataset: str) -> Path:
    """One file per dataset, apart from the test prompts: SFT re-runs only when these change."""
    return DATA / "instructions" / "train" / f"{dataset}.jsonl"


def test_instructions(dataset: str, backbone: str) -> Path:
    return DATA / "instructions" / "test" / dataset / f"{backbone}.jsonl"


def valid_instructions(dataset: str, backbone: str) -> Path:
    return DATA / "instructions" / "valid" / dataset / f"{backbone}.jsonl"


def preferences(dataset: str) -> Path:
    return DATA / "preferences" / dataset


def base_model() -> Path:
    return MODELS / "base"


def llm(kind: str) -> Path:
    """kind ∈ {sft, dmpo}."""
    return MODELS / "llm" / kind


def predictions(dataset: str, backbone_name: str, split: str = "test") -> Path:
    if split == "valid":
        return DATA / "valid_predictions" / dataset / backbone_name
    return DATA / "predictions" / dataset / backbone_name


def ranking_instructions(dataset: str, backbone: str, split: str) -> Path:
    return valid_instructions(dataset, backbone) if split == "valid" else test_instructions(dataset, backbone)


def metrics(stage: str) -> Path:
    return METRICS / stage


def timings(stage: str) -> Path:
    """Wall-clock times of ``stage``: metrics no stage reads, so a re-run marks nothing stale."""
    return METRICS / "timings" / stage
