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


def load_inputs(dataset: str, backbone: str):
    """(candidates user → items best first, targets user → test item)."""
    from recranker.errors import RecrankerError

    c = artifacts.candidates(dataset, backbone)
    missing = {"user_id", "split", "rank", "item_id"} - set(c.columns)
    if missing:
        raise RecrankerError(f"candidates.parquet: missing column '{min(missing)}'")
    c = c[c["split"] == "test"].sort_values(["user_id", "rank"], kind="stable")
    cands = {int(u): g["item_id"].astype(int).tolist() for u, g in c.groupby("user_id", sort=True)}
    inter = artifacts.interactions(dataset)
    test = inter[inter["split"] == "test"]
    targets = dict(zip(test["user_id"].astype(int).tolist(), test["item_id"].astype(int).tolist()))
    return cands, targets


def evaluate(
    dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets)."),
    backbone: str = typer.Option(..., help="Backbone whose candidates were re-ranked."),
) -> None:
    """Write metrics/evaluate/<dataset>/<backbone>.json: base vs pointwise/pairwise/listwise/hybrid."""
    from recranker.io import write_json
    from recranker.ranking import HybridWeights, evaluate_rankings
    from recranker.tracking import start_run

    p = params()
    p.dataset(dataset)
    h = p.evaluate.hybrid
    w = HybridWeights(c1=h.c1, c2=h.c2, c3=h.c3, a1=h.a1, a2=h.a2, a3=h.a3)
    cands, targets = load_inputs(dataset, backbone)
    if p.instruct.max_test_users:  # the users the instruct stage wrote test prompts for
        from recranker.data import test_user_subset

        keep = set(test_user_subset(list(targets), p.instruct.max_test_users, p.seed).tolist())
        targets = {u: i for u, i in targets.items() if u in keep}
    preds = artifacts.predictions(dataset, backbone, p.rank.tasks)
    report, rankings = evaluate_rankings(cands, targets, preds, w=w, ks=p.evaluate.ks)
    report["dataset"], report["backbone_model"] = dataset, backbone
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


def _samples(dataset, backbone, preds, targets, rankings, n):
    """A few prompts with the model's outputs/scores, for the W&B table."""
    from recranker.ranking import parse_instruction

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
