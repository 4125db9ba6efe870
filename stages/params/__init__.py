"""params.yaml, validated on load.

Every section is a pydantic model with ``extra="forbid"``: an unknown key or a bad value fails
with a one-line error naming the dotted key (``params.yaml: sampling.penalty: ...``).
Sections live in sibling modules, one per stage family, and are assembled here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from recranker.errors import RecrankerError

from .backbone import BackboneParams
from .base import Strict
from .data import DatasetParams
from .dmpo import PreferenceParams
from .instruct import InstructParams, SamplingParams
from .llm import LLMParams
from .rank import EvaluateParams, RankParams


class RunParams(Strict):
    """Which datasets and backbones the pipeline runs (the DVC matrix is built from these)."""

    datasets: list[str] = ["ml-100k"]
    backbones: list[str] = ["mf"]


class Params(Strict):
    seed: int = 42
    run: RunParams = RunParams()
    datasets: dict[str, DatasetParams] = {}
    backbone: BackboneParams = BackboneParams()
    sampling: SamplingParams = SamplingParams()
    instruct: InstructParams = InstructParams()
    preferences: PreferenceParams = PreferenceParams()
    llm: LLMParams = LLMParams()
    rank: RankParams = RankParams()
    evaluate: EvaluateParams = EvaluateParams()

    def dataset(self, name: str) -> DatasetParams:
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise RecrankerError(
                f"params.yaml: datasets.{name}: unknown dataset '{name}' (configured: {known})"
            )
        return self.datasets[name]


def _first_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "<root>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {key}: {msg}"


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``path``; raise RecrankerError with one line naming the bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise RecrankerError(f"{path}: not found (run from the project root)") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise RecrankerError(f"{where}: invalid YAML") from None
    if not isinstance(raw, dict):
        raise RecrankerError(f"{path}: top level must be a mapping")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise RecrankerError(_first_error(exc, str(path))) from None
    for name in params.run.datasets:
        params.dataset(name)
    return params
