"""The experiment recipes of both papers: YAML data in ``recranker/recipes/`` and what reads it.

A recipe (``recipes/<name>.yaml``; ``recipes/index.yaml`` gives the order and the paper profile)
is a named list of variants; each variant is a set of ``params.yaml`` overrides that
``recranker exp NAME`` turns into one ``dvc exp run -n <recipe>-<variant> -S key=value ...``.
Every recipe has a CPU form (the default profile of params.yaml plus the recipe's own keys) and a
paper-scale form (``--paper-scale``: :data:`PAPER_PROFILE` plus the recipe's paper overrides), for
GPU machines. The report (``recranker.report``) finds an experiment's results by its name, so the
names built here are the contract between ``exp`` and ``report``.

This module is data loading and string formatting: it never runs DVC and never reads params.yaml
(``recranker exp`` and the tests check every key and value against the params schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from recranker.errors import RecrankerError


@dataclass(frozen=True)
class Variant:
    """One experiment: ``name`` (unique in its recipe), ``label`` for tables/plots, overrides."""

    name: str
    label: str
    set: Mapping[str, Any] = field(default_factory=dict)
    paper_set: Mapping[str, Any] | None = None  # replaces ``set`` at paper scale (None: same)
    x: float | None = None  # position on a sweep plot's x axis
    series: str = ""  # sweeps with several lines (e.g. with / without SFT)


@dataclass(frozen=True)
class Recipe:
    """A table or figure of a paper and the experiments that reproduce it."""

    name: str
    paper: str  # e.g. "RecRanker Table V"
    kind: str  # how the report shows it: main | ablation | sweep | dmpo-auc | dmpo-sweep | cross-domain
    description: str
    variants: tuple[Variant, ...]
    common: Mapping[str, Any] = field(default_factory=dict)  # every variant, CPU and paper scale
    paper_common: Mapping[str, Any] = field(default_factory=dict)  # paper scale, on top of the profile
    targets: tuple[str, ...] = ()  # dvc exp run targets (empty: the whole pipeline)
    cpu_cost: str = ""
    gpu_only: bool = False  # no CPU form: only --paper-scale runs it
    x_label: str = ""  # sweeps: the axis label
    notes: str = ""

    def overrides(self, variant: Variant, paper_scale: bool = False) -> dict[str, Any]:
        """Every ``key → value`` this variant sets, in application order (later wins)."""
        if self.gpu_only and not paper_scale:
            raise RecrankerError(f"recipe '{self.name}' is GPU-only: run it with --paper-scale on a GPU machine")
        out: dict[str, Any] = {}
        if paper_scale:
            out.update(PAPER_PROFILE)
        out.update(self.common)
        if paper_scale:
            out.update(self.paper_common)
        out.update(variant.paper_set if paper_scale and variant.paper_set is not None else variant.set)
        return out

    def exp_name(self, variant: Variant, paper_scale: bool = False) -> str:
        return experiment_name(self.name, variant.name, paper_scale)


def experiment_name(recipe: str, variant: str, paper_scale: bool = False) -> str:
    """The DVC experiment name of a variant (a valid git ref component)."""
    return f"{recipe}-{variant}" + ("-paper" if paper_scale else "")


def format_value(value: Any) -> str:
    """A Python value as DVC's ``-S`` (Hydra override) syntax: ``true``, ``null``, ``[a,b]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:  # Hydra reads 2e-05 as a float; keep the plain decimal form
            text = f"{value:.12f}".rstrip("0")
            if text.endswith("."):
                text += "0"
        return text
    return str(value)


def set_args(overrides: Mapping[str, Any]) -> list[str]:
    """``["-S", "key=value", ...]`` for ``dvc exp run``."""
    out: list[str] = []
    for key, value in overrides.items():
        out += ["-S", f"{key}={format_value(value)}"]
    return out


def exp_run_args(recipe: Recipe, variant: Variant, *, paper_scale: bool = False, queue: bool = False,
                 temp: bool = True) -> list[str]:
    """The argv (after ``dvc``) that runs one variant."""
    argv = ["exp", "run", "-n", recipe.exp_name(variant, paper_scale)]
    if queue:
        argv.append("--queue")
    elif temp:
        argv.append("--temp")  # leaves params.yaml untouched: no override leaks into the next variant
    argv += set_args(recipe.overrides(variant, paper_scale))
    argv += list(recipe.targets)
    return argv


def _variant(raw: dict, where: str) -> Variant:
    unknown = set(raw) - {f.name for f in fields(Variant)}
    if unknown or "name" not in raw or "label" not in raw:
        raise RecrankerError(f"{where}: a variant needs name and label (unknown: {sorted(unknown)})")
    x = raw.get("x")
    return Variant(name=str(raw["name"]), label=str(raw["label"]), set=dict(raw.get("set") or {}),
                   paper_set=None if raw.get("paper_set") is None else dict(raw["paper_set"]),
                   x=None if x is None else float(x), series=str(raw.get("series", "")))


def _recipe(name: str, raw: dict, where: str) -> Recipe:
    allowed = {f.name for f in fields(Recipe)} - {"name"}
    unknown = set(raw) - allowed
    if unknown:
        raise RecrankerError(f"{where}: unknown key '{min(unknown)}' (known: {', '.join(sorted(allowed))})")
    missing = {"paper", "kind", "description", "variants"} - set(raw)
    if missing:
        raise RecrankerError(f"{where}: missing key '{min(missing)}'")
    variants = tuple(_variant(v, f"{where}: variants[{i}]") for i, v in enumerate(raw["variants"]))
    return Recipe(
        name=name, paper=raw["paper"], kind=raw["kind"], description=raw["description"], variants=variants,
        common=dict(raw.get("common") or {}), paper_common=dict(raw.get("paper_common") or {}),
        targets=tuple(raw.get("targets") or ()), cpu_cost=raw.get("cpu_cost", ""),
        gpu_only=bool(raw.get("gpu_only", False)), x_label=raw.get("x_label", ""), notes=raw.get("notes", ""),
    )  # fmt: skip


def load_catalogue(directory) -> tuple[dict[str, Any], tuple[Recipe, ...]]:
    """(paper profile, recipes in catalogue order) from DIRECTORY's index.yaml and <name>.yaml files.

    The structure is checked here; the overrides' keys and values are checked against the params
    schema by ``recranker exp`` before it runs anything (and by tests/test_experiments.py).
    """
    import yaml

    directory = Path(directory)
    index = yaml.safe_load((directory / "index.yaml").read_text(encoding="utf-8"))
    files = {p.stem for p in directory.glob("*.yaml")} - {"index"}
    if set(index["order"]) != files:
        raise RecrankerError(f"{directory}/index.yaml: order must list exactly the recipe files "
                             f"(differs by {sorted(set(index['order']) ^ files)})")
    recipes = tuple(
        _recipe(name, yaml.safe_load((directory / f"{name}.yaml").read_text(encoding="utf-8")),
                str(directory / f"{name}.yaml"))
        for name in index["order"]
    )
    return dict(index["paper_profile"]), recipes


# The catalogue ships with the package (recranker/recipes/): one YAML file of params overrides per
# recipe, so adding an experiment is adding a file, not code.
PAPER_PROFILE, RECIPES = load_catalogue(Path(__file__).with_name("recipes"))

_BY_NAME = {r.name: r for r in RECIPES}


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; unknown names fail listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise RecrankerError(f"unknown recipe '{name}' (known: {', '.join(_BY_NAME)})") from None


def select(r: Recipe, names: list[str] | None) -> list[Variant]:
    """The variants named in ``names`` (all when empty), in recipe order."""
    if not names:
        return list(r.variants)
    known = {v.name for v in r.variants}
    bad = [n for n in names if n not in known]
    if bad:
        raise RecrankerError(f"recipe '{r.name}': unknown variant '{bad[0]}' (known: {', '.join(known)})")
    return [v for v in r.variants if v.name in names]


def lookup(exp_name: str) -> tuple[Recipe, Variant, bool] | None:
    """(recipe, variant, paper_scale) of a DVC experiment name built by :func:`experiment_name`."""
    for r in RECIPES:
        for v in r.variants:
            for paper in (False, True):
                if experiment_name(r.name, v.name, paper) == exp_name:
                    return r, v, paper
    return None


def markdown(r: Recipe) -> str:
    """The recipe's section of docs/experiments.md (kept in sync by a test)."""
    cmd = f"recranker exp {r.name}" + (" --paper-scale" if r.gpu_only else "")
    title = f"### `{r.name}` — {r.paper}" + (" (GPU-only)" if r.gpu_only else "")
    lines = [title, "", r.description, "", "```bash", cmd, "```", "",
             "| variant | label | sets (CPU) | sets (paper scale, on top of the profile) |", "|---|---|---|---|"]

    def sets(v: Variant, paper: bool) -> str:
        if r.gpu_only and not paper:
            return "—"
        if paper:  # what the recipe adds to the paper profile
            over = {**r.common, **r.paper_common, **(v.paper_set if v.paper_set is not None else v.set)}
        else:
            over = r.overrides(v)
        return " ".join(f"`{k}={format_value(val)}`" for k, val in over.items()) or "—"

    lines += [f"| {v.name} | {v.label} | {sets(v, False)} | {sets(v, True)} |" for v in r.variants]
    if r.targets:
        targets = " ".join(f"`{t}`" for t in r.targets)
        lines += ["", f"DVC targets: {targets} (only these stages and what they depend on run)."]
    lines += ["", f"CPU cost: {r.cpu_cost}" + ("" if r.cpu_cost.endswith(".") else ".")]
    if r.notes:
        lines += ["", r.notes]
    return "\n".join(lines) + "\n"
