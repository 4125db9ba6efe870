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
    ap.add_argument("--max-users", type=int, default=0, help="smoke test: rank only this many users per split")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()

    import datasets

    from recranker.io import read_jsonl, write_json
    from recranker.llm.sft import train_sft
    from recranker.prompts.text import RatingScale
    from recranker.ranking.config import HybridWeights
    from recranker.ranking.hybrid import evaluate_rankings
    from recranker.ranking.selection import select_weights, task_arrays, weight_grid
    from stages.artifacts import candidates_and_targets
    from stages.common import params

    datasets.disable_progress_bars()
    os.chdir(ROOT)
    p = params()
    bs = p.llm.sft.batch_size * p.llm.sft.grad_accum
    points = sorted({int(x) for x in a.points.split(",")})
    steps = {max(1, n // bs): n for n in points}
    records = [r for r, _ in read_jsonl(ROOT / f"data/instructions/train/{a.dataset}.jsonl")]
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
    with tempfile.TemporaryDirectory(prefix="recranker-curve-") as tmp:
        snaps = {s: Path(tmp) / f"seen-{n}" for s, n in steps.items()}
        s = p.llm.sft
        cfg = s.model_copy(update={"max_steps": max(steps), "save_steps": 10**9, "bf16": a.bf16 or s.bf16,
                                   "lr": a.lr if a.lr is not None else s.lr})
        cfg = cfg.with_run(seed=p.seed, checkpoint_dir=str(Path(tmp) / "ckpt"), deepspeed=p.llm.deepspeed)
        t0 = time.perf_counter()
        sft = train_sft(ROOT / "models/base", records, [], Path(tmp) / "final", cfg,
                        callbacks=[snapshot_callback(snaps)])
        sft_seconds = time.perf_counter() - t0
        for s, n in sorted(steps.items()):
            t1 = time.perf_counter()
            vp = rank_split(snaps[s], ROOT / f"data/instructions/valid/{a.dataset}/{a.backbone}.jsonl", valid_users,
                            p, scale)
            ranked = {int(r["user_id"]) for rs in vp.values() for r in rs}
            w, sel = select_weights(task_arrays(valid_c, {u: i for u, i in valid_t.items() if u in ranked}, vp),
                                    weight_grid())
            tp = rank_split(snaps[s], ROOT / f"data/instructions/test/{a.dataset}/{a.backbone}.jsonl", hit_users,
                            p, scale)
            chosen, _ = evaluate_rankings(test_c, test_t, tp, w=w)
            paper, _ = evaluate_rankings(test_c, test_t, tp, w=HybridWeights())
            row = {"instructions_seen": n, "steps": s, "rank_seconds": round(time.perf_counter() - t1, 1),
                   "weights": sel["weights"], "valid_objective": sel["valid_objective"],
                   "test": {m: chosen[m] for m in ("backbone", "pointwise", "pairwise", "listwise", "hybrid")
                            if m in chosen},
                   "test_hybrid_paper_weights": paper.get("hybrid"),
                   "pairwise_consistency": chosen.get("pairwise_consistency")}
            rows.append(row)
            print(f"{n:>6} instructions: hybrid HR@3 {row['test']['hybrid']['HR@3']:.4f} "
                  f"NDCG@3 {row['test']['hybrid']['NDCG@3']:.4f} (base {row['test']['backbone']['HR@3']:.4f})",
                  flush=True)
    out = {
        "command": " ".join(["benchmarks/learning_curve.py", *sys.argv[1:]]),
        "dataset": a.dataset, "backbone": a.backbone, "test_users": len(test_t),
        "test_users_ranked": len(hit_users), "batch_size": bs, "lr": cfg.lr, "bf16": cfg.bf16,
        "sft_seconds": round(sft_seconds, 1), "sft_tokens": sft["tokens"],
        "sft_tokens_per_s": round(sft["tokens"] / sft_seconds, 1) if sft_seconds else None,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "schedule_note": "snapshots of one cosine run: an early point also had a higher learning rate",
        "points": rows,
    }
    write_json(a.out, out)
    print(f"{'seen':>6} {'base HR@3':>10} {'hybrid HR@3':>12} {'NDCG@3':>8} {'point':>7} {'pair':>7} {'list':>7}")
    for r in rows:
        t = r["test"]
        print(f"{r['instructions_seen']:>6} {t['backbone']['HR@3']:>10.4f} {t['hybrid']['HR@3']:>12.4f} "
              f"{t['hybrid']['NDCG@3']:>8.4f} " + " ".join(f"{t[m]['HR@3']:>7.4f}" if m in t else f"{'-':>7}"
                                                         for m in ("pointwise", "pairwise", "listwise")))
    print(f"→ {a.out}")


if __name__ == "__main__":
    main()
