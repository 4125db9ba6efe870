"""Data scaling at CPU scale (RecRanker's training-size figure): test HR@3 / NDCG@3 of each task
and of the hybrid against the number of SFT instructions seen, the backbone as the baseline.

One SFT run over the pipeline's training instructions (``llm.sft`` of params.yaml, except
``max_steps``, which the largest point sets) saves its adapter each time it has seen one of
``--points`` instructions. Each adapter then ranks

* the valid prompts (data/instructions/valid/...), where the hybrid's weights are chosen, and
* the test prompts of the users whose test item is among the backbone's candidates. Every other
  test user is a miss for every method whatever the LLM says, so the metrics — computed over ALL
  test users — are exactly those of ranking everyone, at a seventh of the cost.

The learning rate follows the run's cosine schedule, so an early point has seen fewer
instructions *and* a higher learning rate than a run that stops there (stated in the output).
Needs the pipeline's outputs up to `instruct` and `base-model` (``dvc repro instruct base-model``).

    .venv/bin/python benchmarks/learning_curve.py --points 120,600,1500,3000 [--bf16] [--lr 2e-4]
        [--train FILE] [--save-predictions DIR]

``--train`` takes a larger training file than the pipeline's, e.g. data/instructions/train/ of a
run with more ``sampling.n_users`` (1,200 instructions from 400 users), so no point repeats an
instruction. Each point's change over the backbone carries a 95% paired bootstrap interval over
all test users; the JSON is rewritten after every point, so a stopped run keeps what it measured.

Writes benchmarks/results/learning_curve.json (rendered by `recranker report`) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "learning_curve.json"


def snapshot_callback(steps_to_dir: dict[int, Path]):
    from transformers import TrainerCallback

    class Snapshots(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            d = steps_to_dir.get(state.global_step)
            if d is not None:
                model.save_pretrained(d)

    return Snapshots()


def heldout_auc(arr) -> dict[str, float]:
    """What each task's scores know about the held-out item, free of the hybrid's weights: over the
    users whose held-out item is among the candidates, the mean share of the other candidates that
    the task scores below it (ties count half; 0.5 = no information). ``backbone`` is the
    candidates' own order; ``pairwise`` uses soft votes, whose two orders cancel a fixed answer bias.
    """
    import numpy as np

    has = arr.target_pos >= 0
    rows, t = np.flatnonzero(has), arr.target_pos[has]
    k = arr.valid.shape[1]
    grids = {"backbone": np.tile(-np.arange(k, dtype=np.float64), (len(arr.users), 1)),
             "pointwise": arr.point, "pairwise": arr.pair_soft,
             "listwise": None if arr.list_pos is None else -arr.list_pos}
    other = arr.valid[rows].copy()
    other[np.arange(len(rows)), t] = False
    out = {}
    for name, grid in grids.items():
        if grid is None or not len(rows):
            continue
        s = grid[rows]
        st = s[np.arange(len(rows)), t][:, None]
        below = ((s < st) & other).sum(axis=1) + 0.5 * ((s == st) & other).sum(axis=1)
        out[name] = float(np.mean(below / np.maximum(other.sum(axis=1), 1)))
    return out


def yes_share(pairwise_rows) -> float | None:
    """Share of pairwise prompts answered "the first is preferred" (P(Yes) > P(No)): .5 for a model
    that reads the movies and sees each pair in both orders; 0 or 1 for one that answers by rote."""
    rows = list(pairwise_rows or [])
    return sum(r["scores"][0] > r["scores"][1] for r in rows) / len(rows) if rows else None


def rank_split(adapter: Path, path: Path, users: set[int] | None, p, scale):
    import torch

    from recranker.io import read_jsonl
    from recranker.llm.backends.hf import HFBackend
    from recranker.ranking.instructions import parse_instruction
    from recranker.ranking.tasks import run_tasks

    ins = [parse_instruction(r, w) for r, w in read_jsonl(path)]
    ins = [i for i in ins if i.task in p.rank.tasks and (users is None or i.user_id in users)]
    by_task = {t: [i for i in ins if i.task == t] for t in p.rank.tasks}
    workers = min(p.rank.workers, torch.get_num_threads())
    with HFBackend.from_dirs(ROOT / "models/base", adapter, dtype=p.rank.dtype, batch_size=p.rank.batch_size,
                             min_prefix=p.rank.min_prefix, progress=False, workers=workers,
                             threads=max(1, torch.get_num_threads() // workers)) as backend:
        res = run_tasks(backend, by_task, scale=scale, rating_mode=p.rank.rating_mode,
                        listwise_mode=p.rank.listwise_mode)
    return {t: rows for t, (rows, _) in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", default="120,600,1500,3000", help="instructions seen at each snapshot")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--backbone", default="mf")
    ap.add_argument("--lr", type=float, default=None, help="default: llm.sft.lr")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for SFT")
    ap.add_argument("--loss-average", choices=["token", "instruction"], default=None,
                    help="default: llm.sft.loss_average")
    ap.add_argument("--train", type=Path, default=None,
                    help="training instructions (JSONL); default: the pipeline's data/instructions/train")
    ap.add_argument("--save-predictions", type=Path, default=None,
                    help="write each point's valid/test prediction rows under this folder")
    ap.add_argument("--reevaluate", action="store_true",
                    help="no training or ranking: score the predictions saved under --save-predictions again "
                         "and rewrite --out's points (e.g. after a change to the hybrid's read-outs)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="paired bootstrap resamples per point")
    ap.add_argument("--max-users", type=int, default=0, help="smoke test: rank only this many users per split")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()

    import datasets

    from recranker.io import read_jsonl, write_json, write_jsonl
    from recranker.llm.sft import train_sft
    from recranker.prompts.text import RatingScale
    from recranker.ranking.config import HybridWeights
    from recranker.ranking.hybrid import evaluate_rankings
    from recranker.ranking.selection import (
        paired_bootstrap,
        per_user_metrics,
        select_weights,
        target_ranks,
        task_arrays,
        weight_grid,
    )
    from stages.artifacts import candidates_and_targets
    from stages.common import params

    datasets.disable_progress_bars()
    os.chdir(ROOT)
    p = params()
    bs = p.llm.sft.batch_size * p.llm.sft.grad_accum
    points = sorted({int(x) for x in a.points.split(",")})
    steps = {max(1, n // bs): n for n in points}
    train_path = a.train or ROOT / f"data/instructions/train/{a.dataset}.jsonl"
    records = [] if a.reevaluate else [r for r, _ in read_jsonl(train_path)]  # re-evaluation trains nothing
    if not a.reevaluate and max(points) > len(records):
        sys.exit(f"--points: {max(points)} instructions asked, {train_path} has {len(records)} (no repeats)")
    scale = RatingScale.from_stats(json.loads((ROOT / f"data/processed/{a.dataset}/stats.json").read_text()))
    test_c, test_t = candidates_and_targets(a.dataset, a.backbone, "test")
    valid_c, valid_t = candidates_and_targets(a.dataset, a.backbone, "valid")
    hit_users = {u for u, i in test_t.items() if i in set(test_c.get(u, []))}
    valid_users = None
    if a.max_users:  # a smoke test, not a measurement: the metrics then cover these users only
        hit_users = set(sorted(hit_users)[: a.max_users])
        valid_users = set(sorted(valid_t)[: 5 * a.max_users])
        test_t = {u: i for u, i in test_t.items() if u in hit_users}

    rows, t_start = [], time.perf_counter()

    def evaluate_point(vp, tp) -> dict:
        """Weights chosen on the valid predictions, then test over all test users, with intervals;
        what each task learned (held-out-item AUC, pairwise answer balance) on both splits."""
        ranked = {int(r["user_id"]) for rs in vp.values() for r in rs}
        valid_arr = task_arrays(valid_c, {u: i for u, i in valid_t.items() if u in ranked}, vp)
        w, sel = select_weights(valid_arr, weight_grid())
        chosen, _ = evaluate_rankings(test_c, test_t, tp, w=w)
        paper, _ = evaluate_rankings(test_c, test_t, tp, w=HybridWeights())
        arr = task_arrays(test_c, test_t, tp)
        per_user = {m: per_user_metrics(target_ranks(arr, w, ws)) for m, ws in (
            ("backbone", (0.0, 0.0, 0.0)), ("pointwise", (1.0, 0.0, 0.0)), ("pairwise", (0.0, 1.0, 0.0)),
            ("listwise", (0.0, 0.0, 1.0)), ("hybrid", (w.a1, w.a2, w.a3))) if m in chosen}
        learned = {split: {"heldout_auc": heldout_auc(arr_), "pairwise_yes_share": yes_share(preds.get("pairwise"))}
                   for split, arr_, preds in (("valid", valid_arr, vp), ("test", arr, tp))}
        return {"weights": sel["weights"], "valid_objective": sel["valid_objective"],
                "valid_objective_backbone": sel["valid_objective_backbone"],
                "test": {m: chosen[m] for m in ("backbone", "pointwise", "pairwise", "listwise", "hybrid")
                         if m in chosen},
                "test_hybrid_paper_weights": paper.get("hybrid"),
                "pairwise_consistency": chosen.get("pairwise_consistency"),
                "test_vs_backbone": {m: paired_bootstrap(per_user["backbone"], pm, a.bootstrap, p.seed)
                                     for m, pm in per_user.items() if m != "backbone"},
                "learned": learned}

    if a.reevaluate:  # the saved predictions of an earlier run, scored again (e.g. after a read-out change)
        prev = json.loads(a.out.read_text())
        for row in prev["points"]:
            d = a.save_predictions / f"seen-{row['instructions_seen']}"
            vp, tp = ({t.stem: [r for r, _ in read_jsonl(t)] for t in sorted((d / split).glob("*.jsonl"))}
                      for split in ("valid", "test"))
            rows.append({**{k: row[k] for k in ("instructions_seen", "steps", "rank_seconds")},
                         **evaluate_point(vp, tp)})
        prev.update(points=rows, reevaluated=" ".join(["benchmarks/learning_curve.py", *sys.argv[1:]]))
        write_json(a.out, prev)
        print_table(rows, a.out)
        return

    def header(cfg, sft_seconds, sft):
        return {
            "command": " ".join(["benchmarks/learning_curve.py", *sys.argv[1:]]),
            "dataset": a.dataset, "backbone": a.backbone, "train_file": str(train_path),
            "train_instructions": len(records), "test_users": len(test_t),
            "test_users_ranked": len(hit_users), "batch_size": bs, "lr": cfg.lr, "bf16": cfg.bf16,
            "loss_average": cfg.loss_average,
            "sft_seconds": round(sft_seconds, 1), "sft_tokens": sft["tokens"],
            "sft_tokens_per_s": round(sft["tokens"] / sft_seconds, 1) if sft_seconds else None,
            "total_seconds": round(time.perf_counter() - t_start, 1),
            "schedule_note": "snapshots of one cosine run: an early point also had a higher learning rate",
            "points": rows,
        }
    with tempfile.TemporaryDirectory(prefix="recranker-curve-") as tmp:
        snaps = {s: Path(tmp) / f"seen-{n}" for s, n in steps.items()}
        s = p.llm.sft
        cfg = s.model_copy(update={"max_steps": max(steps), "save_steps": 10**9, "bf16": a.bf16 or s.bf16,
                                   "lr": a.lr if a.lr is not None else s.lr,
                                   "loss_average": a.loss_average or s.loss_average})
        cfg = cfg.with_run(seed=p.seed, checkpoint_dir=str(Path(tmp) / "ckpt"), deepspeed=p.llm.deepspeed)
        t0 = time.perf_counter()
        sft = train_sft(ROOT / "models/base", records, [], Path(tmp) / "final", cfg,
                        callbacks=[snapshot_callback(snaps)])
        sft_seconds = time.perf_counter() - t0
        for s, n in sorted(steps.items()):
            t1 = time.perf_counter()
            vp = rank_split(snaps[s], ROOT / f"data/instructions/valid/{a.dataset}/{a.backbone}.jsonl", valid_users,
                            p, scale)
            tp = rank_split(snaps[s], ROOT / f"data/instructions/test/{a.dataset}/{a.backbone}.jsonl", hit_users,
                            p, scale)
            if a.save_predictions:
                for split, preds in (("valid", vp), ("test", tp)):
                    for task, task_rows in preds.items():
                        write_jsonl(a.save_predictions / f"seen-{n}" / split / f"{task}.jsonl", task_rows)
            row = {"instructions_seen": n, "steps": s, "rank_seconds": round(time.perf_counter() - t1, 1),
                   **evaluate_point(vp, tp)}
            rows.append(row)
            write_json(a.out, header(cfg, sft_seconds, sft))
            print(f"{n:>6} instructions: hybrid HR@3 {row['test']['hybrid']['HR@3']:.4f} "
                  f"NDCG@3 {row['test']['hybrid']['NDCG@3']:.4f} (base {row['test']['backbone']['HR@3']:.4f})",
                  flush=True)
    write_json(a.out, header(cfg, sft_seconds, sft))
    print_table(rows, a.out)


def print_table(rows: list[dict], out: Path) -> None:
    print(f"{'seen':>6} {'base HR@3':>10} {'hybrid HR@3':>12} {'95% interval of the change':>27} {'NDCG@3':>8} "
          f"{'point':>7} {'pair':>7} {'list':>7} {'consistency':>11}")
    for r in rows:
        t = r["test"]
        lo, hi = r["test_vs_backbone"]["hybrid"]["HR@3"]["improvement_ci95_%"] or (float("nan"),) * 2
        print(f"{r['instructions_seen']:>6} {t['backbone']['HR@3']:>10.4f} {t['hybrid']['HR@3']:>12.4f} "
              f"{f'[{lo:+.1f}%, {hi:+.1f}%]':>27} {t['hybrid']['NDCG@3']:>8.4f} "
              + " ".join(f"{t[m]['HR@3']:>7.4f}" if m in t else f"{'-':>7}" for m in ("pointwise", "pairwise", "listwise"))
              + f" {r['pairwise_consistency'] or 0:>11.3f}")
    print(f"→ {out}")


if __name__ == "__main__":
    main()
