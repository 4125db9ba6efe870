"""params.yaml, validated on load.

Every section is a pydantic model with ``extra="forbid"``: an unknown key or a bad value fails
with a one-line error naming the dotted key (``params.yaml: sampling.penalty: ...``). Validation
is strict: no coercion (``seed: true`` or ``dim: '16'`` are errors, an int is a valid float), a key
given twice in the YAML is an error, and lists that cannot be empty say so. ``datasets`` must
configure every dataset of ``run.datasets``; any other top-level section may be left out, and the
stage says in one line which sections run on their defaults (:func:`defaulted_sections`).
Sections live in sibling modules, one per stage family, and are assembled here.
"""

from __future__ import annotations

import re
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

    # may be empty only when the DMPO branch runs on imported preference data alone (checked below)
    datasets: list[str] = ["ml-100k"]
    backbones: list[str] = Field(["mf"], min_length=1)


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
        if not self.run.datasets and not self.preferences.imported:
            raise _KeyError("run.datasets", "must not be empty (it may be only when preferences.imported "
                                            "gives the DMPO branch its data)")
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


# pydantic's strict-mode types, said as a params.yaml author would read them
_STRICT_TYPES = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
                 "string_type": "a string", "list_type": "a list", "dict_type": "a mapping",
                 "model_type": "a mapping"}


def _first_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _KeyError):
        return f"{source}: {cause.key}: {cause.msg}"
    key = ".".join(str(p) for p in err["loc"]) or "<root>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] in _STRICT_TYPES:
        msg = f"must be {_STRICT_TYPES[err['type']]}, not {_yaml_kind(err.get('input'))} (no conversion)"
    elif err["type"] == "too_short":
        msg = "must not be empty"
    return f"{source}: {key}: {msg}"


def _yaml_kind(value) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"a {'list' if isinstance(value, list) else 'mapping' if isinstance(value, dict) else type(value).__name__}"


def defaulted_sections(params: Params) -> list[str]:
    """Top-level sections params.yaml left out (they run on their defaults)."""
    return [name for name in Params.model_fields if name not in params.model_fields_set]


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
        raw = yaml.load(text, Loader=_StrictLoader) or {}
    except _DuplicateKey as exc:
        raise RecrankerError(f"{path}:{exc.line}: {exc.key}: given twice (YAML keeps only the last)") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise RecrankerError(f"{where}: invalid YAML") from None
    return check_params(raw, str(path))


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int):
        super().__init__(key)
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)
    and reads floats as YAML 1.2 does, like DVC's ruamel: ``1e-4`` is a float, not a string."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2's float (PyYAML implements 1.1, where "1e-4" without a dot is a string).
_FLOAT_1_2 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def check_params(raw, source: str) -> Params:
    """Validate a params tree; raise RecrankerError with one line naming SOURCE and the bad key."""
    if not isinstance(raw, dict):
        raise RecrankerError(f"{source}: top level must be a mapping")
    try:
        params = Params.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise RecrankerError(_first_error(exc, source)) from None
    for name in params.run.datasets:
        if name not in params.datasets:
            known = ", ".join(sorted(params.datasets)) or "none"
            raise RecrankerError(f"{source}: datasets.{name}: unknown dataset '{name}' (configured: {known})")
    return params
