"""Read the output of ``dvc exp show --json`` (DVC 3) into flat experiment records.

Shape (DVC 3.x): a list of baselines; the first is ``{"rev": "workspace", ...}``; each entry has
``data: {params: {file: {data}}, metrics: {file: {data} | {error}}}`` and ``experiments``: a list
of ``{name, executor, revs: [{rev, name, data, error}]}`` (``executor.state`` = queued/running
for experiments that have not finished). A metrics file that does not exist comes as ``{"error":
...}`` and is simply absent here, so the report shows it as "not run".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recranker.errors import RecrankerError


@dataclass(frozen=True)
class Experiment:
    name: str  # "workspace", the baseline's branch/short rev, or the experiment name
    rev: str
    kind: str  # workspace | baseline | experiment
    status: str  # done | queued | running | failed
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, nested
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics file path → parsed content
    timestamp: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"


def _payload(data: dict, params_file: str) -> tuple[dict, dict]:
    params = (data.get("params") or {}).get(params_file, {}).get("data") or {}
    metrics = {path: v["data"] for path, v in sorted((data.get("metrics") or {}).items())
               if isinstance(v, dict) and "data" in v}
    return params, metrics


def parse_exp_show(rows: Any, params_file: str = "params.yaml") -> list[Experiment]:
    """Every workspace / baseline / experiment row, in DVC's order."""
    if not isinstance(rows, list):
        raise RecrankerError("dvc exp show --json: expected a list of baselines")
    out: list[Experiment] = []
    for base in rows:
        if not isinstance(base, dict) or "rev" not in base:
            raise RecrankerError("dvc exp show --json: a baseline without 'rev'")
        data = base.get("data") or {}
        params, metrics = _payload(data, params_file)
        kind = "workspace" if base["rev"] == "workspace" else "baseline"
        name = "workspace" if kind == "workspace" else (base.get("name") or base["rev"][:7])
        out.append(Experiment(name, base["rev"], kind, "failed" if base.get("error") else "done",
                              params, metrics, data.get("timestamp")))
        for exp in base.get("experiments") or []:
            revs = exp.get("revs") or []
            if not revs:
                continue
            head = revs[0]  # the newest revision of this experiment
            state = ((exp.get("executor") or {}).get("state") or "").lower()
            if state in ("queued", "running", "failed"):
                status = state
            elif head.get("error"):
                status = "failed"
            else:
                status = "done"
            params, metrics = _payload(head.get("data") or {}, params_file)
            out.append(Experiment(exp.get("name") or head.get("name") or head["rev"][:7], head["rev"],
                                  "experiment", status, params, metrics, (head.get("data") or {}).get("timestamp")))
    return out


def find(experiments: list[Experiment], name: str) -> Experiment | None:
    """The finished experiment called ``name`` (the first, i.e. the newest baseline's), else None."""
    for e in experiments:
        if e.name == name and e.done:
            return e
    return None


def status_of(experiments: list[Experiment], name: str) -> str:
    """'done', 'queued', 'running', 'failed' or 'not run'."""
    for e in experiments:
        if e.name == name:
            return e.status
    return "not run"


def get(tree: Any, dotted: str, default: Any = None) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; ``default`` when a part is missing."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for nested dicts (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key in sorted(tree):
        out.update(flatten(tree[key], f"{prefix}.{key}" if prefix else str(key)))
    return out


def diff(params: dict, reference: dict) -> dict[str, tuple[Any, Any]]:
    """``{key: (reference value, value)}`` for every flattened key that differs."""
    a, b = flatten(reference), flatten(params)
    return {k: (a.get(k, "—"), b.get(k, "—")) for k in sorted(set(a) | set(b)) if a.get(k, "—") != b.get(k, "—")}


def finished(rows: list) -> list:
    """The baselines of a `dvc exp show --json` output with only their finished experiments
    (no workspace entry, nothing queued, running or failed): what `recranker exp --save` keeps."""
    out = []
    for base in rows:
        if not isinstance(base, dict) or base.get("rev") == "workspace":
            continue
        exps = [e for e in base.get("experiments") or []
                if not (e.get("executor") or {}).get("state") and e.get("revs")
                and not any(r.get("error") for r in e["revs"])]
        if exps:
            out.append({**base, "experiments": exps})
    return out


def with_full_metrics(rows: list, read) -> list:
    """ROWS with each experiment's metrics replaced by the whole file its commit holds.

    `dvc exp show --json` keeps only scalars, so the 95% intervals (lists) of a metrics file are
    lost; ``read(rev, path)`` returns that file's text at the experiment's commit, or None (then
    DVC's scalars stay)."""
    import copy
    import json

    rows = copy.deepcopy(rows)
    for base in rows:
        for exp in (base.get("experiments") or []) if isinstance(base, dict) else []:
            for rev in exp.get("revs") or []:
                for path, entry in ((rev.get("data") or {}).get("metrics") or {}).items():
                    text = read(rev.get("rev"), path) if isinstance(entry, dict) and "data" in entry else None
                    if text is not None:
                        entry["data"] = json.loads(text)
    return rows


def with_kept(rows: list, kept: list) -> list:
    """ROWS plus every kept experiment whose name ROWS lacks, under ROWS' first baseline (a fresh
    clone's HEAD), so that the report does not depend on local experiment refs."""
    live = {e.get("name") for base in rows if isinstance(base, dict) for e in base.get("experiments") or []}
    extra = [e for base in kept for e in base.get("experiments") or [] if e.get("name") not in live]
    if not extra:
        return rows
    rows = [dict(b) for b in rows]
    base = next((b for b in rows if b.get("rev") != "workspace"), None)
    if base is None:  # not a git repository with a commit: keep them under their own baseline
        return rows + [{**kept[0], "experiments": extra}]
    base["experiments"] = list(base.get("experiments") or []) + extra
    return rows
