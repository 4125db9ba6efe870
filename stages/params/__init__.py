"""params.yaml, validated on load.

Every section is a pydantic model with ``extra="forbid"``: an unknown key or a bad value fails
with a one-line error naming the dotted key (``params.yaml: sampling.penalty: ...``).
Sections live in sibling modules, one per stage family, and are assembled here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

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
    seed: int = Field(42, ge=0)  # every random choice of the pipeline is seeded from this
    run: RunParams = RunParams()
    datasets: dict[str, DatasetParams] = {}
    backbone: BackboneParams = BackboneParams()
    sampling: SamplingParams = SamplingParams()
    instruct: InstructParams = InstructParams()
    preferences: PreferenceParams = PreferenceParams()
    llm: LLMParams = LLMParams()
    rank: RankParams = RankParams()
    evaluate: EvaluateParams = EvaluateParams()

    @model_validator(mode="after")
    def _cross_checks(self):
        k = self.backbone.top_k
        for i, cut in enumerate(self.evaluate.ks):
            if not 1 <= cut <= k:  # HR@k / NDCG@k rank only the k' = backbone.top_k candidates
                raise _KeyError(f"evaluate.ks.{i}", f"{cut} is outside 1..{k} (backbone.top_k)")
        for name in self.preferences.imported:  # both would write data/preferences/<name>
            if name in self.datasets:
                raise _KeyError(f"preferences.imported.{name}", f"'{name}' is also a key of datasets: rename one")
        return self

    def dataset(self, name: str) -> DatasetParams:
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise RecrankerError(
                f"params.yaml: datasets.{name}: unknown dataset '{name}' (configured: {known})"
            )
        return self.datasets[name]


class _KeyError(ValueError):
    """A cross-section check failed at KEY (a dotted params.yaml path)."""

    def __init__(self, key: str, msg: str):
        super().__init__(msg)
        self.key, self.msg = key, msg


def _first_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _KeyError):
        return f"{source}: {cause.key}: {cause.msg}"
    key = ".".join(str(p) for p in err["loc"]) or "<root>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {key}: {msg}"


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``path``; raise RecrankerError with one line naming the bad key."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecrankerError(f"{path}: not found (run from the project root)") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RecrankerError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                             "save the file as UTF-8") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise RecrankerError(f"{where}: invalid YAML") from None
    return check_params(raw, str(path))


def check_params(raw, source: str) -> Params:
    """Validate a params tree; raise RecrankerError with one line naming SOURCE and the bad key."""
    if not isinstance(raw, dict):
        raise RecrankerError(f"{source}: top level must be a mapping")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise RecrankerError(_first_error(exc, source)) from None
    for name in params.run.datasets:
        if name not in params.datasets:
            known = ", ".join(sorted(params.datasets)) or "none"
            raise RecrankerError(f"{source}: datasets.{name}: unknown dataset '{name}' (configured: {known})")
    return params
