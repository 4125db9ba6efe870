"""Stage `evaluate`: HR@k / NDCG@k of the backbone, each LLM task and RecRanker's hybrid ranking.

Reads models/backbones/<ds>/<bb>/candidates.parquet (split=test), data/processed/<ds>/
interactions.parquet (split=test: the ground truth of EVERY test user) and
data/predictions/<ds>/<bb>/<task>.jsonl; writes metrics/evaluate/<ds>/<bb>.json (DVC metrics)
and metrics/evaluate/<ds>/<bb>_plot.json (one row per method, for `dvc plots`).
"""

from __future__ import annotations

import json

import typer

from stages import artifacts, paths
from stages.common import params


def evaluate(
    dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets)."),
    backbone: str = typer.Option(..., help="Backbone whose candidates were re-ranked."),
) -> None:
    """Write metrics/evaluate/<dataset>/<backbone>.json: base vs pointwise/pairwise/listwise/hybrid."""
    from recranker.io import write_json
    from recranker.ranking.hybrid import evaluate_rankings
    from recranker.tracking import start_run

    p = params("evaluate")
    p.dataset(dataset)
    w = p.evaluate.hybrid
    selection = None
    if p.evaluate.weights == "validation":
        w, selection = choose_weights(dataset, backbone, p.rank.tasks, p.evaluate.ks)
    cands, targets = artifacts.candidates_and_targets(dataset, backbone)
    if p.instruct.max_test_users:  # the users the instruct stage wrote test prompts for
        from recranker.data import test_user_subset

        keep = set(test_user_subset(list(targets), p.instruct.max_test_users, p.seed).tolist())
        targets = {u: i for u, i in targets.items() if u in keep}
    preds = artifacts.predictions(dataset, backbone, p.rank.tasks)
    report, rankings = evaluate_rankings(cands, targets, preds, w=w, ks=p.evaluate.ks)
    report["dataset"], report["backbone_model"] = dataset, backbone
    report["hybrid_weights"] = {
        "weights": w.model_dump(),
        "chosen_on": "validation" if selection else "params (evaluate.hybrid)",
        **({"selection": selection} if selection else {}),
    }
    report["bootstrap"] = bootstrap_intervals(cands, targets, preds, w, p.evaluate.ks, p.evaluate.bootstrap,
                                              p.seed, report)
    out = paths.metrics("evaluate") / dataset
    write_json(out / f"{backbone}.json", report)
    methods = [m for m in ("backbone", "pointwise", "pairwise", "listwise", "hybrid") if m in report]
    plot = [{"method": m, **{k: v for k, v in report[m].items() if isinstance(v, float)}} for m in methods]
    write_json(out / f"{backbone}_plot.json", plot)
    with start_run(f"evaluate:{dataset}:{backbone}", p.evaluate.model_dump()) as run:
        run.summary({f"{m}/{k}": v for m in methods for k, v in report[m].items() if isinstance(v, float)})
        if p.evaluate.samples:
            run.table("samples", *_samples(dataset, backbone, preds, targets, rankings, p.evaluate.samples))
    for m in methods:
        vals = "  ".join(f"{k} {v:.4f}" for k, v in report[m].items() if isinstance(v, float))
        typer.echo(f"evaluate {dataset}/{backbone} {m:9s} {vals}")
    typer.echo(f"evaluate {dataset}/{backbone}: hybrid weights {report['hybrid_weights']['weights']} "
               f"(chosen on {report['hybrid_weights']['chosen_on']})")


def choose_weights(dataset: str, backbone: str, tasks, ks):
    """The hybrid's weights that do best on the valid split (see recranker.ranking.selection)."""
    from recranker.errors import RecrankerError
    from recranker.ranking.selection import select_weights, task_arrays, weight_grid

    cands, targets = artifacts.candidates_and_targets(dataset, backbone, "valid")
    preds = artifacts.predictions(dataset, backbone, tasks, "valid")
    ranked = {int(r["user_id"]) for rows in preds.values() for r in rows}
    targets = {u: i for u, i in targets.items() if u in ranked}  # the users the valid prompts cover
    if not targets:
        raise RecrankerError(
            f"evaluate.weights=validation: no valid-split predictions for {dataset}/{backbone} (no user's "
            "valid item is among the candidates); set evaluate.weights: paper")
    w, summary = select_weights(task_arrays(cands, targets, preds), weight_grid(), ks)
    summary["objective"] = "mean of " + ", ".join(f"HR@{k}, NDCG@{k}" for k in ks) + " on the valid split"
    return w, summary


def bootstrap_intervals(cands, targets, preds, w, ks, n_boot: int, seed: int, report: dict) -> dict:
    """Each method's change over the backbone with a 95% paired bootstrap interval over ALL test
    users; the per-user ranks are cross-checked against the evaluation's own metrics."""
    import numpy as np

    from recranker.errors import RecrankerError
    from recranker.ranking.selection import (
        paired_bootstrap,
        per_user_metrics,
        target_ranks,
        task_arrays,
    )

    arr = task_arrays(cands, targets, preds)
    weights = {"backbone": (0.0, 0.0, 0.0), "pointwise": (1.0, 0.0, 0.0), "pairwise": (0.0, 1.0, 0.0),
               "listwise": (0.0, 0.0, 1.0), "hybrid": (w.a1, w.a2, w.a3)}
    per_user = {m: per_user_metrics(target_ranks(arr, w, a), ks) for m, a in weights.items() if m in report}
    for m, pm in per_user.items():
        for name, v in pm.items():
            if not np.isclose(v.mean(), report[m][name]):
                raise RecrankerError(f"evaluate: bootstrap ranks disagree with the evaluation ({m} {name})")
    return {m: paired_bootstrap(per_user["backbone"], pm, n_boot, seed)
            for m, pm in per_user.items() if m != "backbone"}


def _samples(dataset, backbone, preds, targets, rankings, n):
    """A few prompts with the model's outputs/scores, for the W&B table."""
    from recranker.ranking.instructions import parse_instruction

    wanted = {r["id"]: (task, r) for task, rows in preds.items() for r in rows[:n]}
    path = paths.test_instructions(dataset, backbone)
    rows = []
    if path.is_file():
        for ins in artifacts.test_instructions(dataset, backbone, set(preds), parse_instruction):
            if ins.id in wanted:
                task, r = wanted[ins.id]
                prompt = "\n".join(f"[{m['role']}] {m['content']}" for m in ins.messages)
                extra = r.get("output") or r.get("rating_probs") or r.get("label_probs")
                rows.append([task, ins.user_id, prompt, json.dumps(r["candidates"]), json.dumps(r["scores"]),
                             json.dumps(extra), targets.get(ins.user_id),
                             json.dumps(rankings.get("hybrid", {}).get(ins.user_id))])
    cols = ["task", "user_id", "prompt", "candidates", "scores", "output", "test_item", "hybrid_ranking"]
    return cols, rows
