"""The experiment report: `dvc exp show --json` parsing, paper-shaped tables with "not run" cells,
deterministic bytes, and the `report` command end to end on saved inputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from recranker.ranking.hybrid import evaluate_rankings
from recranker.report import (
    NA,
    NOT_RUN,
    Inputs,
    build,
    parse_exp_show,
    render_plots,
    to_html,
    to_markdown,
)
from recranker.report.build import Locations

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "dvc_exp_show_tiny.json"
LOC = Locations(evaluate="metrics/evaluate/{dataset}/{backbone}.json",
                backbone="metrics/backbone/{dataset}/{backbone}.json", prepare="metrics/prepare/{dataset}.json",
                sft="metrics/sft.json", dmpo="metrics/dmpo.json", pref_eval="metrics/pref_eval.json",
                pref_backbone="metrics/pref_backbone/{dataset}.json")


def evaluate_json(shift: float) -> dict:
    """A real evaluate-stage report (ranking.evaluate_rankings) on 4 users × 4 candidates."""
    cands = {u: [10, 11, 12, 13] for u in range(4)}
    targets = {0: 12, 1: 13, 2: 10, 3: 11}
    point = [{"user_id": u, "candidates": c, "scores": [0.0, shift, 1.0 if targets[u] == 12 else 0.2, 0.5]}
             for u, c in cands.items()]
    pair = []
    for u, c in cands.items():
        for a, b in itertools.pairwise(c):
            pair += [{"user_id": u, "candidates": [a, b], "scores": [0.6, 0.4]},
                     {"user_id": u, "candidates": [b, a], "scores": [0.7, 0.3]}]  # position bias: first wins
    report, _ = evaluate_rankings(cands, targets, {"pointwise": point, "pairwise": pair}, ks=(3, 5))
    report["dataset"], report["backbone_model"] = "ml-100k", "mf"
    return json.loads(json.dumps(report))


def pref_json(dmpo_auc: float) -> dict:
    m = lambda a: {"auc": a, "pairwise_accuracy": a, "top1_accuracy": a / 2, "n_samples": 50}
    return {"ml-100k": {"domain": "in-domain", "base": m(0.5), "sft": m(0.6), "dmpo": m(dmpo_auc)}}


def params(**over) -> dict:
    p = {"seed": 42, "run": {"datasets": ["ml-100k"], "backbones": ["mf"]}, "evaluate": {"ks": [3, 5]},
         "datasets": {"ml-100k": {"format": "ml-100k"}}, "sampling": {"mode": "adaptive"}}
    for k, v in over.items():
        node = p
        *parents, leaf = k.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = v
    return p


def entry(name, prm, metrics, state=None):
    data = {"rev": "r" + name, "timestamp": "2025-01-01T00:00:00", "params": {"params.yaml": {"data": prm}},
            "metrics": {path: {"data": d} for path, d in metrics.items()}, "deps": {}, "outs": {}, "meta": {}}
    return {"name": name, "executor": {"state": state} if state else None,
            "revs": [{"rev": "r" + name, "name": name, "data": data, "error": None, "experiments": None}]}


def exp_show() -> list:
    ev = "metrics/evaluate/ml-100k/mf.json"
    ws = {"rev": "workspace", "name": None, "error": None, "experiments": None,
          "data": {"rev": "workspace", "timestamp": None, "params": {"params.yaml": {"data": params()}},
                   "metrics": {ev: {"data": evaluate_json(0.1)}, "metrics/pref_eval.json": {"data": pref_json(0.7)},
                               "metrics/backbone/ml-100k/mf.json": {"error": {"type": "FileNotFoundError"}}}}}
    base = {"rev": "abc1234def", "name": "main", "error": None, "data": ws["data"] | {"rev": "abc1234def"},
            "experiments": [
                entry("rr-ablation-full", params(), {ev: evaluate_json(0.1)}),
                entry("rr-ablation-no-pe", params(**{"instruct.enhance": False}), {ev: evaluate_json(0.9)}),
                entry("rr-c1-c1-0p05", params(), {}, state="queued"),
                entry("rr-c1-c1-0p1", params(**{"evaluate.hybrid.c1": 0.1}), {ev: evaluate_json(0.3)}),
                entry("dmpo-k-k1", params(**{"llm.dmpo.k": 1}), {"metrics/pref_eval.json": pref_json(0.65)}),
                entry("dmpo-k-k5", params(**{"llm.dmpo.k": 5}), {"metrics/pref_eval.json": pref_json(0.75),
                                                                  "metrics/dmpo.json": {"valid_auc": 0.58}}),
                entry("my-own", params(seed=1), {}),
            ]}
    return [ws, base]


EXPLAIN = [{"index": 0, "dataset": "ml-100k", "candidates": [
    {"answer": "Toy Story (1995), Heat (1995)", "label": 1, "tokens": ["Toy", " Story", ","],
     "prob": {"sft": [0.1, 0.5, 0.9], "dmpo": [0.3, 0.6, 0.95]}, "mean_prob": {"sft": 0.5, "dmpo": 0.62}},
    {"answer": "Heat (1995), Toy Story (1995)", "label": 0, "tokens": ["Heat", ","],
     "prob": {"sft": [0.2, 0.8], "dmpo": [0.05, 0.8]}, "mean_prob": {"sft": 0.5, "dmpo": 0.43}}]}]


def make_inputs(rows=None, explanations=EXPLAIN) -> Inputs:
    return Inputs(parse_exp_show(rows or exp_show()), LOC, {"seed": 42, "run": {"datasets": ["ml-100k"]}},
                  {"numpy": "2.0"}, {"ml-100k": {"stats.json sha256": "0123abcd"}}, explanations)


def table(report, title_part):
    return next(t for s in report.sections for t in s.tables if title_part in t.title)


def test_parse_real_dvc_exp_show():
    """Captured from a throw-away DVC project: two `dvc exp run --temp -S`, one `--queue`."""
    exps = parse_exp_show(json.loads(FIXTURE.read_text()))
    assert [(e.name, e.kind, e.status) for e in exps] == [
        ("workspace", "workspace", "done"), ("master", "baseline", "done"),
        ("c2-0.3", "experiment", "done"), ("c1-0.1", "experiment", "done"), ("q1", "experiment", "queued")]
    c2 = exps[2]
    assert c2.params["evaluate"]["hybrid"]["c2"] == 0.3
    assert c2.metrics["metrics/evaluate/a/mf.json"]["hybrid"]["HR@3"] == pytest.approx(0.15)
    assert exps[4].metrics == {}


def test_main_table_shape_and_values():
    rep = build(make_inputs())
    ev = evaluate_json(0.1)
    t = table(rep, "RecRanker (workspace)")
    assert t.columns == ["Backbone", "Method", "ml-100k HR@3", "ml-100k NDCG@3", "ml-100k HR@5", "ml-100k NDCG@5"]
    rows = {r[1]: r[2:] for r in t.rows}
    assert rows["Base"][0] == f"{ev['backbone']['HR@3']:.4f}"
    assert rows["+ pointwise"][1] == f"{ev['pointwise']['NDCG@3']:.4f}"
    assert rows["+ listwise"] == [NA] * 4  # ranked, but not this task: n/a, not "not run"
    assert rows["Improvement (hybrid vs base)"][1].endswith("%")
    t3 = table(rep, "RecRanker Table III (rr-table3-all")
    assert all(c == NOT_RUN for r in t3.rows for c in r[2:])  # never zeros
    assert t3.columns[2:6] == ["ml-100k HR@3", "ml-100k NDCG@3", "ml-100k HR@5", "ml-100k NDCG@5"]
    assert {r[0] for r in t3.rows} == {"mf", "lightgcn", "mixgcf", "sgl"}


def test_variant_tables_mark_missing_and_queued():
    rep = build(make_inputs())
    t = table(rep, "RecRanker Table V")
    by = {r[0]: r for r in t.rows}
    assert by["RecRanker"][2] == "done" and by["RecRanker"][3] != NOT_RUN
    assert by["w/o adaptive user sampling"][2:] == [NOT_RUN] * (len(t.columns) - 2)
    assert by["w/o prompt enhancement"][3] == f"{evaluate_json(0.9)['hybrid']['HR@3']:.4f}"
    c1 = {r[1]: r for r in table(rep, "Figure 3 (C1)").rows}
    assert c1["rr-c1-c1-0p05"][2] == "queued" and c1["rr-c1-c1-0p05"][3] == NOT_RUN
    assert c1["rr-c1-c1-0p1"][3] != NOT_RUN
    k = {r[1]: r for r in table(rep, "DMPO Figure 3").rows}
    assert k["dmpo-k-k5"][3:] == ["0.6000", "0.7500", "0.5800"] and k["dmpo-k-k3"][3:] == [NOT_RUN] * 3
    assert k["dmpo-k-k1"][5] == NOT_RUN  # ran without a metrics/dmpo.json
    auc = table(rep, "Preference AUC (workspace)")
    assert [r[1] for r in auc.rows][:3] == ["0.5000", "0.6000", "0.7000"]
    assert auc.rows[-1][1] == "+16.67%"
    exps = {r[0]: r for r in table(rep, "Experiments").rows}
    assert exps["my-own"][2] == "(not a recipe)" and "seed=1" in exps["my-own"][3]
    assert "instruct.enhance=false" in exps["rr-ablation-no-pe"][3]


def test_position_consistency_and_case_study():
    rep = build(make_inputs())
    t = table(rep, "Pairwise position consistency")
    assert t.rows and all(r[2] == "0.0000" for r in t.rows)  # "first wins" in both orders: never consistent
    assert table(rep, "Mean per-token").rows[0][:3] == ["0", "positive", "Toy Story (1995), Heat (1995)"]
    md = to_markdown(build(make_inputs(explanations=None)))
    assert "Case study" in md and NOT_RUN in md



def _curve_point(n, hybrid_hr3, lo, hi):
    metric = lambda x: {"HR@3": x, "NDCG@3": x / 2}
    return {"instructions_seen": n, "pairwise_consistency": 0.5,
            "test": {"backbone": metric(0.06), "pointwise": metric(0.05), "hybrid": metric(hybrid_hr3)},
            "test_vs_backbone": {"hybrid": {"HR@3": {"improvement_%": 100 * (hybrid_hr3 - 0.06) / 0.06,
                                                     "improvement_ci95_%": [lo, hi]}}}}


def test_learning_curve_section_table_and_plots():
    curve = {"command": "benchmarks/learning_curve.py --points 120,600", "lr": 5e-4, "bf16": True,
             "points": [_curve_point(600, 0.066, -4.0, 25.0), _curve_point(120, 0.054, -20.0, 3.0)]}
    inp = make_inputs()
    rep = build(Inputs(**{**inp.__dict__, "learning_curves": {"learning_curve": curve}}))
    t = table(rep, "learning_curve: test over all users")
    assert [r[0] for r in t.rows] == ["120", "600"]  # by instructions seen
    assert t.columns[:3] == ["Instructions seen", "Base HR@3", "Base NDCG@3"] and "+ pairwise HR@3" not in t.columns
    assert t.rows[1][-2] == "+10.00% [-4.00%, +25.00%]"
    plots = {pl.name: pl for s in rep.sections for pl in s.plots}
    hr = plots["learning_curve_HR3"]
    assert [ser.y for ser in hr.series if ser.label == "+ RecRanker (hybrid) HR@3"] == [[0.054, 0.066]]
    assert "learning_curve_NDCG3" in render_plots(rep)
    assert not [t for s in rep.sections for t in s.tables if "what each task learned" in t.title]  # not measured
    curve["points"][0]["learned"] = {split: {"heldout_auc": {"backbone": 0.6, "pairwise": 0.55},
                                             "pairwise_yes_share": 0.5} for split in ("valid", "test")}
    rep = build(Inputs(**{**inp.__dict__, "learning_curves": {"learning_curve": curve}}))
    learned = table(rep, "learning_curve: what each task learned")
    assert learned.rows == [["600", "valid", "0.600", "—", "0.550", "—", "0.500"],
                            ["600", "test", "0.600", "—", "0.550", "—", "0.500"]]
    md = to_markdown(build(make_inputs()))
    assert "Learning curve" in md and NOT_RUN in md.split("Learning curve")[1]

def test_provenance_lists_param_changes():
    rep = build(make_inputs())
    t = table(rep, "params.yaml vs defaults")
    keys = {r[0] for r in t.rows}
    assert "run.backbones" in keys and "seed" not in keys
    assert table(rep, "Data").rows == [["ml-100k", "stats.json sha256", "0123abcd"]]


def test_render_is_deterministic():
    a, b = build(make_inputs()), build(make_inputs())
    pa, pb = render_plots(a), render_plots(b)
    assert pa.keys() == pb.keys() and "rr-c1" in pa and "position_consistency" in pa and "explain_0" in pa
    assert all(pa[k] == pb[k] for k in pa)
    assert pa["rr-c1"][:8] == b"\x89PNG\r\n\x1a\n" and b"Software" not in pa["rr-c1"]
    assert to_html(a, pa) == to_html(b, pb)
    assert to_markdown(a) == to_markdown(b)
    assert "data:image/png;base64," in to_html(a, pa)


def test_report_command_end_to_end(tmp_path, monkeypatch):
    """The stage on saved inputs, twice: same files, same bytes."""
    import typer
    from typer.testing import CliRunner

    from stages.report import report

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "pref_explain.json").write_text(json.dumps({"explanations": EXPLAIN}))
    (tmp_path / "exp.json").write_text(json.dumps(exp_show()))
    app = typer.Typer()
    app.command()(report)
    outs = []
    for _ in range(2):
        res = CliRunner().invoke(app, ["--exp-show", "exp.json"])
        assert res.exit_code == 0, res.output
        outs.append({p.relative_to(tmp_path / "reports").as_posix(): p.read_bytes()
                     for p in sorted((tmp_path / "reports").rglob("*")) if p.is_file()})
    assert outs[0] == outs[1]
    assert {"README.md", "report.html", "plots/rr-c1.png", "plots/explain_0.png"} <= set(outs[0])
    md = outs[0]["README.md"].decode()
    assert "| mf | + RecRanker (hybrid) |" in md and "not run" in md


def test_wandb_report_skips_when_offline():
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "wandb_report.py"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"} | {"WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("skipped: offline")


def test_kept_experiments_stand_in_for_missing_exp_refs():
    """A fresh clone's `dvc exp show` has no experiments; the ones kept in metrics/experiments.json
    (finished ones only) give the same report rows."""
    from recranker.report.expshow import finished, with_kept

    rows = json.loads(FIXTURE.read_text())
    clone = [{**b, "experiments": None} for b in rows]  # what a fresh clone sees
    kept = finished(rows)
    assert all(b["rev"] != "workspace" for b in kept)
    done = sorted(e.name for e in parse_exp_show(rows) if e.kind == "experiment" and e.done)
    merged = parse_exp_show(with_kept(clone, kept))
    assert sorted(e.name for e in merged if e.kind == "experiment") == done and done
    assert with_kept(rows, kept) == rows  # live experiments win; nothing is doubled


def test_kept_intervals_reach_the_tables():
    """`dvc exp show` drops lists; `recranker exp --save` restores the whole metrics file from the
    experiment's commit, and the sweep tables then print the 95% intervals."""
    from recranker.report.expshow import with_full_metrics

    rows = exp_show()
    ev, pe = "metrics/evaluate/ml-100k/mf.json", "metrics/pref_eval.json"
    whole = pref_json(0.75)
    whole["ml-100k"]["dmpo"]["auc_ci95"] = [0.7123, 0.7891]
    ev_whole = evaluate_json(0.3)
    ev_whole["bootstrap"] = {"hybrid": {"HR@3": {"improvement_ci95_%": [-12.5, 30.25]}}}
    files = {("rdmpo-k-k5", pe): json.dumps(whole), ("rrr-c1-c1-0p1", ev): json.dumps(ev_whole),
             ("rdmpo-k-k5", "metrics/dmpo.json"): json.dumps({"valid_auc": 0.58, "valid_auc_ci95": [0.5012, 0.6543]})}
    full = with_full_metrics(rows, lambda rev, path: files.get((rev, path)))
    assert "auc_ci95" not in json.dumps(rows)  # the input is not modified
    rep = build(make_inputs(full))
    k = {r[1]: r for r in table(rep, "DMPO Figure 3").rows}
    assert k["dmpo-k-k5"][3:] == ["0.6000", "0.7500 [0.712, 0.789]", "0.5800 [0.501, 0.654]"]
    assert k["dmpo-k-k1"][3:5] == ["0.6000", "0.6500"]  # no file at its commit: DVC's scalars stay
    t = table(rep, "Figure 3 (C1)")
    c1 = {r[1]: r for r in t.rows}
    change = c1["rr-c1-c1-0p1"][t.columns.index("ml-100k/mf HR@3 change [95%]")]
    assert change == f"{ev_whole['hybrid']['improvement_%']['HR@3']:+.2f}% [-12.50%, +30.25%]"
    assert c1["rr-c1-c1-0p05"][t.columns.index("ml-100k/mf HR@3 change [95%]")] == NOT_RUN  # queued
