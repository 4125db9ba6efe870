"""Assemble the report (tables shaped like the papers', plots, provenance) from loaded data.

Inputs are what ``dvc exp show --json`` gives (:class:`~recranker.report.expshow.Experiment`),
plus a few things only the caller can read (package versions, data checksums, the per-token
explanations). Where metrics live is given by :class:`Locations` (the caller knows the paths).
A variant whose experiment does not exist (or has not finished) is shown as "not run".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recranker.errors import RecrankerError
from recranker.experiments import RECIPES, Recipe, Variant, experiment_name, lookup

from .expshow import Experiment, diff, find, flatten, get, status_of
from .model import NA, NOT_RUN, Plot, Report, Section, Series, Table, fmt, pct, pval

METHODS = [("backbone", "Base"), ("pointwise", "+ pointwise"), ("pairwise", "+ pairwise"),
           ("listwise", "+ listwise"), ("hybrid", "+ RecRanker (hybrid)")]
PREF_MODELS = [("base", "Base LLM (untuned)"), ("sft", "SFT only (TALLRec-style)"), ("dmpo", "SFT + DMPO")]


@dataclass(frozen=True)
class Locations:
    """Metrics file paths as ``str.format`` patterns (keys of ``dvc exp show`` metrics)."""

    evaluate: str  # {dataset} {backbone}
    backbone: str  # {dataset} {backbone}
    prepare: str  # {dataset}
    sft: str
    dmpo: str
    pref_eval: str
    pref_backbone: str  # {dataset}: {backbone_name: {"auc": ...}} (optional)


@dataclass(frozen=True)
class Inputs:
    experiments: list[Experiment]
    loc: Locations
    defaults: dict[str, Any]  # the params schema's defaults (Params().model_dump())
    versions: dict[str, str]  # package → version
    checksums: dict[str, dict[str, str]]  # dataset → {what: hash}
    explanations: list[dict] | None = None  # metrics/pref_explain.json "explanations"
    paper_scale: bool = False  # show the paper-scale experiments of each recipe instead of the CPU ones
    effective_params: dict[str, Any] | None = None  # the workspace params after validation (defaults filled)
    learning_curves: dict[str, dict[str, Any]] | None = None  # name → benchmarks/learning_curve.py's JSON


def _metric_names(params: Mapping) -> list[str]:
    ks = get(params, "evaluate.ks") or [3, 5]
    return [m for k in ks for m in (f"HR@{k}", f"NDCG@{k}")]


def _scope(r: Recipe, v: Variant, e: Experiment | None, workspace: Experiment, key: str, paper: bool) -> list[str]:
    """run.datasets / run.backbones of a variant: its experiment's params, else its overrides, else the workspace."""
    if e is not None and get(e.params, key):
        return list(get(e.params, key))
    try:
        over = r.overrides(v, paper)
    except RecrankerError:  # a GPU-only recipe at CPU scale
        over = {}
    return list(over.get(key) or get(workspace.params, key) or [])


def _cell(e: Experiment | None, path: str, *keys: str, digits: int = 4) -> str:
    if e is None:
        return NOT_RUN
    data = e.metrics.get(path)
    if data is None:
        return NOT_RUN
    value = get(data, ".".join(keys)) if keys else data
    return fmt(value, digits) if not isinstance(value, dict) else NA


def _auc_cell(e: Experiment | None, path: str, ds: str, model: str) -> str:
    """The AUC, with its 95% bootstrap interval when the metrics file kept it."""
    return _with_interval(e, path, f"{ds}.{model}.auc")


def _valid_auc_cell(e: Experiment | None, path: str) -> str:
    """The valid-pair AUC a training stage reports (what lr and steps are chosen on), with its interval."""
    return _with_interval(e, path, "valid_auc")


def _with_interval(e: Experiment | None, path: str, key: str) -> str:
    """The value at ``key``, followed by its 95% interval (``key``_ci95) when the file kept it."""
    cell = _cell(e, path, *key.split("."))
    ci = get(e.metrics.get(path), f"{key}_ci95") if e else None
    return f"{cell} [{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, list) and len(ci) == 2 else cell


def _change(e: Experiment | None, path: str, method: str, metric: str) -> str:
    """``method``'s change over the base in %, with its 95% paired bootstrap interval if kept."""
    data = e.metrics.get(path) if e else None
    if data is None:
        return NOT_RUN
    value = get(data, f"{method}.improvement_%.{metric}")
    if not isinstance(value, (int, float)):
        return NA
    ci = get(data, f"bootstrap.{method}.{metric}.improvement_ci95_%")
    return pct(value) + (f" [{pct(ci[0])}, {pct(ci[1])}]" if isinstance(ci, list) and len(ci) == 2 else "")


def _interval(e: Experiment | None, loc: Locations, ds: str, bb: str, metric: str) -> str:
    data = e.metrics.get(loc.evaluate.format(dataset=ds, backbone=bb)) if e else None
    if data is None:
        return NOT_RUN
    ci = get(data, f"bootstrap.hybrid.{metric}.improvement_ci95_%")
    return f"[{pct(ci[0])}, {pct(ci[1])}]" if isinstance(ci, list) and len(ci) == 2 else NA


def main_table(e: Experiment | None, title: str, datasets: Sequence[str], backbones: Sequence[str],
               metrics: Sequence[str], loc: Locations) -> Table:
    """RecRanker Tables III/IV: per backbone, Base and each re-ranking, then the improvement row."""
    cols = ["Backbone", "Method"] + [f"{ds} {m}" for ds in datasets for m in metrics]
    rows = []
    for bb in backbones:
        for method, label in METHODS:
            rows.append([bb, label] + [_cell(e, loc.evaluate.format(dataset=ds, backbone=bb), method, m)
                                       for ds in datasets for m in metrics])
        imp = []
        for ds in datasets:
            data = e.metrics.get(loc.evaluate.format(dataset=ds, backbone=bb)) if e else None
            for m in metrics:
                if data is None:
                    imp.append(NOT_RUN)
                else:
                    imp.append(pct(get(data, f"hybrid.improvement_%.{m}")) if "hybrid" in data else NA)
        rows.append([bb, "Improvement (hybrid vs base)"] + imp)
        rows.append([bb, "95% paired bootstrap interval"] + [_interval(e, loc, ds, bb, m)
                                                             for ds in datasets for m in metrics])
    note = "" if e is not None else "experiment not run"
    return Table(title, cols, rows, note)


def _variant_rows(r: Recipe, inp: Inputs, workspace: Experiment, paper: bool):
    for v in r.variants:
        name = experiment_name(r.name, v.name, paper)
        yield v, name, find(inp.experiments, name), status_of(inp.experiments, name)


def variant_table(r: Recipe, inp: Inputs, workspace: Experiment, method: str = "hybrid") -> tuple[Table, Plot]:
    """One row per variant: ``method``'s metrics for every dataset × backbone; plus the sweep plot."""
    paper = inp.paper_scale
    rows_src = list(_variant_rows(r, inp, workspace, paper))
    pairs: list[tuple[str, str]] = []
    for v, _, e, _ in rows_src:
        for ds in _scope(r, v, e, workspace, "run.datasets", paper):
            for bb in _scope(r, v, e, workspace, "run.backbones", paper):
                if (ds, bb) not in pairs:
                    pairs.append((ds, bb))
    metrics = _metric_names(workspace.params)
    cols = ["Variant", "Experiment", "Status"] + [f"{ds}/{bb} {m}" for ds, bb in pairs for m in metrics] + [
        f"{ds}/{bb} {metrics[0]} change [95%]" for ds, bb in pairs]
    rows, series = [], {}
    for v, name, e, status in rows_src:
        cells = [_cell(e, inp.loc.evaluate.format(dataset=ds, backbone=bb), method, m) for ds, bb in pairs for m in metrics]
        cells += [_change(e, inp.loc.evaluate.format(dataset=ds, backbone=bb), method, metrics[0]) for ds, bb in pairs]
        rows.append([v.label, name, status] + cells)
        if e is None or v.x is None:
            continue
        for ds, bb in pairs:
            data = e.metrics.get(inp.loc.evaluate.format(dataset=ds, backbone=bb)) or {}
            for m in metrics[-2:]:  # the largest k: HR and NDCG
                value = get(data, f"{method}.{m}")
                if isinstance(value, (int, float)):
                    s = series.setdefault((ds, bb, m), Series(f"{ds}/{bb} {m}", [], []))
                    s.x.append(float(v.x))
                    s.y.append(float(value))
    ticks = {float(v.x): v.label for v in r.variants if v.x is not None} if r.name == "rr-model-scaling" else None
    plot = Plot(r.name, f"{r.paper}: {method}", r.x_label or "variant", "metric", list(series.values()), ticks)
    return Table(f"{r.paper} — {method} ({r.name})", cols, rows), plot


def _pref_datasets(e: Experiment | None, r: Recipe | None, v: Variant | None, workspace: Experiment, loc, paper) -> list[str]:
    if e is not None and isinstance(e.metrics.get(loc.pref_eval), dict):
        return sorted(e.metrics[loc.pref_eval])
    over: dict = {}
    if r is not None and v is not None:
        try:
            over = r.overrides(v, paper)
        except RecrankerError:  # a GPU-only recipe at CPU scale
            over = {}
    return list(over.get("llm.pref_eval.datasets") or get(workspace.params, "llm.pref_eval.datasets")
                or over.get("run.datasets") or get(workspace.params, "run.datasets") or [])


def auc_table(e: Experiment | None, title: str, datasets: Sequence[str], loc: Locations) -> Table:
    """DMPO Table 2: AUC per model (rows) and dataset (columns), backbones on the same pairs."""
    cols = ["Model"] + [f"{ds} AUC" for ds in datasets]
    rows = [[label] + [_auc_cell(e, loc.pref_eval, ds, m) for ds in datasets] for m, label in PREF_MODELS]
    names: list[str] = []
    for ds in datasets:
        data = e.metrics.get(loc.pref_backbone.format(dataset=ds)) if e else None
        names += [n for n in sorted(data or {}) if n not in names]
    for n in names:
        rows.append([f"backbone {n}"] + [_cell(e, loc.pref_backbone.format(dataset=ds), n, "auc") for ds in datasets])
    imp = []
    for ds in datasets:
        sft, dmpo = (get(e.metrics.get(loc.pref_eval), f"{ds}.{m}.auc") if e else None for m in ("sft", "dmpo"))
        imp.append(NOT_RUN if e is None or loc.pref_eval not in e.metrics else
                   (pct(100 * (dmpo - sft) / sft) if isinstance(sft, float) and isinstance(dmpo, float) and sft else NA))
    rows.append(["Improvement (DMPO vs SFT)"] + imp)
    note = "" if names else "conventional backbones: no metrics/pref_backbone file in this run (not run)"
    return Table(title, cols, rows, note)


def pref_sweep(r: Recipe, inp: Inputs, workspace: Experiment) -> tuple[Table, Plot]:
    """DMPO Figures 3/4: test AUC of SFT and SFT+DMPO and DMPO's valid AUC per variant; test AUC vs x per series."""
    paper = inp.paper_scale
    rows_src = list(_variant_rows(r, inp, workspace, paper))
    datasets: list[str] = []
    for v, _, e, _ in rows_src:
        datasets += [d for d in _pref_datasets(e, r, v, workspace, inp.loc, paper) if d not in datasets]
    cols = ["Variant", "Experiment", "Status"] + [f"{ds} {m} AUC" for ds in datasets for m in ("sft", "dmpo")] + [
        "dmpo valid AUC"]
    rows, series = [], {}
    for v, name, e, status in rows_src:
        rows.append([v.label, name, status] + [_auc_cell(e, inp.loc.pref_eval, ds, m)
                                               for ds in datasets for m in ("sft", "dmpo")] + [_valid_auc_cell(e, inp.loc.dmpo)])
        for ds in datasets:
            value = get(e.metrics.get(inp.loc.pref_eval), f"{ds}.dmpo.auc") if e else None
            if isinstance(value, (int, float)) and v.x is not None:
                label = f"{ds} DMPO" + (f" ({v.series})" if v.series else "")
                s = series.setdefault(label, Series(label, [], []))
                s.x.append(float(v.x))
                s.y.append(float(value))
    plot = Plot(r.name, f"{r.paper}: preference AUC", r.x_label or "variant", "AUC", list(series.values()))
    return Table(f"{r.paper} ({r.name})", cols, rows), plot


def cross_domain_table(r: Recipe, inp: Inputs, workspace: Experiment) -> Table:
    paper = inp.paper_scale
    rows_src = list(_variant_rows(r, inp, workspace, paper))
    datasets: list[str] = []
    for v, _, e, _ in rows_src:
        datasets += [d for d in _pref_datasets(e, r, v, workspace, inp.loc, paper) if d not in datasets]
    cols = ["Trained on", "Experiment", "Status"] + [f"{ds} {m} AUC" for ds in datasets for m in ("sft", "dmpo")]
    rows = []
    for v, name, e, status in rows_src:
        cells = []
        for ds in datasets:
            dom = get(e.metrics.get(inp.loc.pref_eval), f"{ds}.domain") if e else None
            for m in ("sft", "dmpo"):
                c = _cell(e, inp.loc.pref_eval, ds, m, "auc")
                cells.append(f"{c} ({dom})" if dom and c not in (NOT_RUN, NA) else c)
        rows.append([v.label, name, status] + cells)
    return Table(f"{r.paper} ({r.name})", cols, rows)


def consistency(inp: Inputs) -> tuple[Table, Plot]:
    """Pairwise position consistency (same answer for both orders of a pair), every finished run."""
    rows, xs, ys, ticks = [], [], [], {}
    for e in inp.experiments:
        if not e.done:
            continue
        for path in sorted(e.metrics):
            data = e.metrics[path]
            if not isinstance(data, dict) or "pairwise_consistency" not in data:
                continue
            where = f"{data.get('dataset', '?')}/{data.get('backbone_model', '?')}"
            both = get(data, "counts.pairwise_pairs_with_both_orders")
            rows.append([e.name, where, fmt(data["pairwise_consistency"]), fmt(both)])
            if isinstance(data["pairwise_consistency"], (int, float)):
                ticks[float(len(xs))] = f"{e.name}\n{where}"
                xs.append(float(len(xs)))
                ys.append(float(data["pairwise_consistency"]))
    table = Table("Pairwise position consistency", ["Experiment", "Dataset/backbone", "Consistency", "Pairs (both orders)"],
                  rows, "" if rows else "not run: needs instruct.pairwise_both_orders=true and pairwise ranking "
                                        "(the rr-ablation recipe sets both)")
    plot = Plot("position_consistency", "Pairwise position consistency", "", "share of consistent pairs",
                [Series("consistency", xs, ys)], ticks, kind="bar")
    return table, plot


def learning_curve_section(curves: Mapping[str, Mapping[str, Any]] | None) -> Section:
    """RecRanker's data-scaling figure at CPU scale: test HR@3 / NDCG@3 against instructions seen,
    one table and two plots per measured curve (e.g. per SFT loss)."""
    sec = Section("Learning curve: test quality against SFT instructions seen",
                  "benchmarks/learning_curve.py: snapshots of one SFT run; at each, the hybrid's weights are "
                  "chosen on the valid split and test is reported over all test users, with the change of the "
                  "hybrid over the backbone and its 95% paired bootstrap interval.")
    curves = {k: v for k, v in (curves or {}).items() if v.get("points")}
    if not curves:
        sec.text += " " + NOT_RUN + "."
    for name, curve in sorted(curves.items()):
        table, plots = _curve(name, curve)
        sec.tables.append(table)
        learned = _learned(name, curve)
        if learned is not None:
            sec.tables.append(learned)
        sec.plots += plots
    return sec


LEARNED = ("backbone", "pointwise", "pairwise", "listwise")


def _learned(name: str, curve: Mapping[str, Any]) -> Table | None:
    """Per point and split: each task's held-out-item AUC and the pairwise answers' "Yes" share
    (the points of a file written before these were measured have none)."""
    points = sorted((pt for pt in curve["points"] if pt.get("learned")), key=lambda x: x["instructions_seen"])
    if not points:
        return None
    rows = [[str(pt["instructions_seen"]), split]
            + [fmt(get(pt, f"learned.{split}.heldout_auc.{task}"), 3) for task in LEARNED]
            + [fmt(get(pt, f"learned.{split}.pairwise_yes_share"), 3)]
            for pt in points for split in ("valid", "test")]
    return Table(f"{name}: what each task learned (held-out-item AUC, 0.5 = no information)",
                 ["Instructions seen", "Split"] + [f"{t} AUC" for t in LEARNED] + ["pairwise Yes share"], rows,
                 "Over the users whose held-out item is among the candidates: the share of the other candidates "
                 "a task scores below the held-out item (ties half). backbone = the candidates' order; pairwise = "
                 "soft votes over both orders. Yes share: pairwise prompts answered 'the first' (.5 when the "
                 "answers follow the movies).")


def _curve(name: str, curve: Mapping[str, Any]) -> tuple[Table, list[Plot]]:
    methods = [(m, label) for m, label in METHODS if any(m in pt["test"] for pt in curve["points"])]
    cols = ["Instructions seen"] + [f"{label} {k}" for _, label in methods for k in ("HR@3", "NDCG@3")] \
        + ["hybrid HR@3 change [95%]", "position consistency"]
    rows = []
    series = {(m, k): Series(f"{label} {k}", [], [], "--" if m == "backbone" else "-o")
              for m, label in methods for k in ("HR@3", "NDCG@3")}
    for pt in sorted(curve["points"], key=lambda x: x["instructions_seen"]):
        n, test = pt["instructions_seen"], pt["test"]
        change = get(pt, "test_vs_backbone.hybrid.HR@3") or {}
        ci = change.get("improvement_ci95_%")
        rows.append([str(n)] + [fmt(get(test, f"{m}.{k}")) for m, _ in methods for k in ("HR@3", "NDCG@3")]
                    + [f"{pct(change.get('improvement_%'))} [{pct(ci[0])}, {pct(ci[1])}]" if ci else NA,
                       fmt(pt.get("pairwise_consistency"), 3)])
        for (m, k), ser in series.items():
            value = get(test, f"{m}.{k}")
            if isinstance(value, (int, float)):
                ser.x.append(float(n))
                ser.y.append(float(value))
    how = (f"lr {curve.get('lr')}, bf16 {curve.get('bf16')}, loss averaged per {curve.get('loss_average', 'token')}; "
           f"SFT {curve.get('sft_seconds')} s at {curve.get('sft_tokens_per_s')} tokens/s; "
           f"`{curve.get('command', '?')}`")
    table = Table(f"{name}: test over all users, weights chosen on validation at each point", cols, rows,
                  f"{how}. {curve.get('schedule_note', '')}")
    plots = [Plot(f"{name}_{k.replace('@', '')}", f"{name}: {k} against SFT instructions seen", "instructions seen",
                  k, [ser for (_, kk), ser in series.items() if kk == k]) for k in ("HR@3", "NDCG@3")]
    return table, plots


def explanation_section(explanations: Sequence[dict] | None) -> Section:
    sec = Section("Case study: per-token probabilities before/after DMPO",
                  "p(token | prompt, previous tokens) of the positive and the negatives under each model "
                  "(metrics/pref_explain.json, written by pref-eval).")
    if not explanations:
        sec.text += " " + NOT_RUN + "."
        return sec
    rows = []
    key = "mean_prob" if "mean_prob" in explanations[0]["candidates"][0] else "mean_logprob"
    for ex in explanations:
        for c in ex["candidates"]:
            rows.append([str(ex["index"]), "positive" if c["label"] == 1 else "negative", c["answer"][:60]]
                        + [fmt(c[key].get(m)) for m in sorted(c[key])])
    models = sorted(explanations[0]["candidates"][0][key])
    title = "Mean per-token probability (the paper's score)" if key == "mean_prob" else \
        "Mean per-token log-probability (a file written before issue 14)"
    sec.tables.append(Table(title, ["Sample", "Label", "Answer"] + models, rows))
    for ex in explanations:
        series = []
        for c in ex["candidates"]:
            kind = "pos" if c["label"] == 1 else "neg"
            for m in sorted(c["prob"]):
                series.append(Series(f"{m} {kind}: {c['answer'][:20]}", [float(i) for i in range(len(c["prob"][m]))],
                                     [max(float(p), 1e-8) for p in c["prob"][m]], "--o" if m == "sft" else "-x"))
        pos = next((c for c in ex["candidates"] if c["label"] == 1), ex["candidates"][0])
        ticks = {float(i): repr(t)[1:-1][:10] for i, t in enumerate(pos["tokens"])}
        sec.plots.append(Plot(f"explain_{ex['index']}", f"sample {ex['index']}", "token of the positive answer",
                              "probability", series, ticks, logy=True))
    return sec


def provenance(inp: Inputs, workspace: Experiment) -> Section:
    sec = Section("How this run was made",
                  "Parameters that differ from the schema defaults (params.yaml vs stages.params), package "
                  "versions and data checksums. Experiments list their own differences below.")
    changed = diff(inp.effective_params if inp.effective_params is not None else workspace.params, inp.defaults)
    sec.tables.append(Table("params.yaml vs defaults", ["Key", "Default", "Workspace"],
                            [[k, pval(a), pval(b)] for k, (a, b) in changed.items()],
                            "" if changed else "params.yaml equals the defaults"))
    sec.tables.append(Table("Packages", ["Package", "Version"], [[k, v] for k, v in sorted(inp.versions.items())]))
    rows = [[ds, what, h] for ds in sorted(inp.checksums) for what, h in sorted(inp.checksums[ds].items())]
    sec.tables.append(Table("Data", ["Dataset", "What", "Hash"], rows, "" if rows else "no processed data found"))
    return sec


def pipeline_section(inp: Inputs, ws: Experiment) -> Section:
    sec = Section("Workspace pipeline", "The metrics of the current workspace (the last `dvc repro`).")
    datasets, backbones = get(ws.params, "run.datasets") or [], get(ws.params, "run.backbones") or []
    metrics = _metric_names(ws.params)
    keys = ["users", "items", "ratings", "density"]
    sec.tables.append(Table("Datasets", ["Dataset"] + keys,
                            [[ds] + [_cell(ws, inp.loc.prepare.format(dataset=ds), k) for k in keys] for ds in datasets]))
    bk = [m for k in (3, 5, 10, 20) for m in (f"HR@{k}", f"NDCG@{k}")]
    sec.tables.append(Table("Backbones (full ranking, test)", ["Dataset", "Backbone"] + bk,
                            [[ds, bb] + [_cell(ws, inp.loc.backbone.format(dataset=ds, backbone=bb), "test", m) for m in bk]
                             for ds in datasets for bb in backbones]))
    sec.tables.append(main_table(ws, "RecRanker (workspace)", datasets, backbones, metrics, inp.loc))
    keys = ("steps", "n_train", "first_train_loss", "final_train_loss", "eval_loss",
            "final_reward_accuracy")
    sec.tables.append(Table("LLM training", ["Stage", *keys],
                            [[stage] + [_cell(ws, path, k) for k in keys]
                             for stage, path in (("sft", inp.loc.sft), ("dmpo", inp.loc.dmpo))],
                            "— = not reported by that stage"))
    sec.tables.append(auc_table(ws, "Preference AUC (workspace)", _pref_datasets(ws, None, None, ws, inp.loc, False), inp.loc))
    return sec


def experiments_section(inp: Inputs, ws: Experiment) -> Section:
    rows = []
    for e in inp.experiments:
        if e.kind != "experiment":
            continue
        hit = lookup(e.name)
        what = f"{hit[0].paper} / {hit[1].label}" if hit else "(not a recipe)"
        changed = diff(e.params, ws.params)
        rows.append([e.name, e.status, what, "; ".join(f"{k}={pval(b)}" for k, (_, b) in changed.items()) or "none"])
    return Section("Experiments", "Every experiment `dvc exp show` lists, with its parameters that differ from "
                   "the workspace.", [Table("Experiments", ["Name", "Status", "Recipe", "Params vs workspace"], rows,
                                            "" if rows else "no experiments yet (`recranker exp --list`)")])


def build(inp: Inputs) -> Report:
    """The whole report, deterministic for the same inputs."""
    ws = next((e for e in inp.experiments if e.kind == "workspace"), None)
    if ws is None:
        ws = Experiment("workspace", "workspace", "workspace", "done", {}, {})
    sections = [provenance(inp, ws), pipeline_section(inp, ws), experiments_section(inp, ws)]
    paper = inp.paper_scale
    for r in RECIPES:
        if r.gpu_only and not paper:
            continue
        sec = Section(f"{r.paper} — `recranker exp {r.name}{' --paper-scale' if paper else ''}`", r.description)
        if r.kind == "main":
            for v, name, e, status in _variant_rows(r, inp, ws, paper):
                sec.tables.append(main_table(e, f"{r.paper} ({name}: {status})",
                                             _scope(r, v, e, ws, "run.datasets", paper),
                                             _scope(r, v, e, ws, "run.backbones", paper),
                                             _metric_names(e.params if e else ws.params), inp.loc))
        elif r.kind in ("ablation", "sweep"):
            table, plot = variant_table(r, inp, ws)
            sec.tables.append(table)
            if r.kind == "sweep":
                sec.plots.append(plot)
        elif r.kind == "dmpo-auc":
            for v, name, e, status in _variant_rows(r, inp, ws, paper):
                sec.tables.append(auc_table(e, f"{r.paper} ({name}: {status})",
                                            _pref_datasets(e, r, v, ws, inp.loc, paper), inp.loc))
        elif r.kind == "dmpo-sweep":
            table, plot = pref_sweep(r, inp, ws)
            sec.tables.append(table)
            sec.plots.append(plot)
        elif r.kind == "cross-domain":
            sec.tables.append(cross_domain_table(r, inp, ws))
        sections.append(sec)
    table, plot = consistency(inp)
    sections.append(Section("Position consistency", "Does the tuned LLM give the same pairwise answer when "
                            "the two candidates swap places? (Position shifting in training should raise it.)",
                            [table], [plot]))
    sections.append(learning_curve_section(inp.learning_curves))
    sections.append(explanation_section(inp.explanations))
    return Report("RecRanker / DMPO experiment report", sections)


__all__ = ["Inputs", "Locations", "build", "flatten"]
