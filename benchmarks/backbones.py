"""Speed and accuracy of the backbones: ML-100K and a synthetic ML-1M-sized dataset.

Each (dataset, model, seed) runs in its own child process (so peak RSS is that run's own),
with ``--threads`` torch threads; ``--jobs`` children run side by side. Prints a table (test
metrics as mean ± std over seeds) and writes benchmarks/results/backbones.json with one object
per (model, dataset): sec_per_epoch, epochs, best_epoch, train_s, eval_s, peak_rss_mb, test
metrics (means), per-seed metrics and the std.

    python benchmarks/backbones.py                                   # ML-100K, all models, seed 0
    python benchmarks/backbones.py --seeds 0,1,2 --models mf,lightgcn
    python benchmarks/backbones.py --datasets ml-1m-synth --max-epochs 3   # speed only

Data: ML-100K through recranker.data (read_raw + prepare, the pipeline's own split) from
$RECRANKER_DATA or ../shared/data; "ml-1m-synth" = recranker.data.synthesize(6040, 3706,
1,000,000 ratings, seed 0) with the same leave-one-out by time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "backbones.json"
ALL_MODELS = ["mostpop", "mf", "lightgcn", "mixgcf", "sgl", "sasrec", "bert4rec", "cl4srec"]
REPORT = ["HR@3", "HR@5", "NDCG@5", "HR@10", "NDCG@10"]


def _data_root() -> Path:
    env = os.environ.get("RECRANKER_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def load_dataset(name: str):
    from recranker.backbones import Interactions
    from recranker.data import prepare, read_raw
    from recranker.data.raw import RawData

    if name == "ml-100k":
        prepared = prepare(read_raw("ml-100k", _data_root() / "ml-100k"), name=name)
    elif name == "ml-1m-synth":
        from recranker.data import synthesize

        ratings, items = synthesize(6040, 3706, 1_000_000, seed=0)
        ratings = ratings.set_axis(["user", "item", "rating", "timestamp"], axis=1)
        items = items.rename(columns={items.columns[0]: "item", items.columns[1]: "title"})
        raw = RawData("ml-1m", ratings, items, (1.0, 5.0), True)
        prepared = prepare(raw, name=name)
    else:
        raise SystemExit(f"unknown dataset {name}")
    st = prepared.stats
    return Interactions.from_frame(prepared.interactions, st["users"], st["items"])


def run_one(dataset: str, model: str, seed: int, max_epochs: int | None, threads: int) -> dict:
    """Train and evaluate once in this process; return the measurements."""
    import torch

    from recranker.backbones import build
    from recranker.backbones.ranking import evaluate
    from recranker.backbones.training import fit
    from stages.params.backbone import BackboneParams

    torch.set_num_threads(threads)
    bp = BackboneParams()
    data = load_dataset(dataset)
    net = build(model, data.n_users, data.n_items, bp.model(model).model_dump(), seed=seed)
    res = fit(
        net, data, max_epochs=max_epochs, patience=bp.patience, eval_every=bp.eval_every, seed=seed
    )
    t0 = time.perf_counter()
    test = evaluate(net, data, "test")
    valid = evaluate(net, data, "valid")
    eval_s = time.perf_counter() - t0
    return {
        "dataset": dataset, "model": model, "seed": seed, "epochs": res.epochs,
        "best_epoch": res.best_epoch, "train_s": round(res.train_seconds, 2),
        "sec_per_epoch": round(res.train_seconds / max(res.epochs, 1), 4),
        "eval_s": round(eval_s, 3), "validation_s": round(res.eval_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "test": test, "valid": valid, "threads": threads,
    }  # fmt: skip


def _child(args_one: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--one", *args_one]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode:
        return {
            "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
            "cmd": args_one,
        }
    return json.loads(out.stdout.strip().splitlines()[-1])


def aggregate(runs: list[dict]) -> dict:
    first = runs[0]
    keys = ["sec_per_epoch", "epochs", "best_epoch", "train_s", "eval_s", "peak_rss_mb"]
    out = {"dataset": first["dataset"], "model": first["model"], "seeds": [r["seed"] for r in runs],
           "threads": first["threads"]}  # fmt: skip
    for k in keys:
        out[k] = round(float(np.mean([r[k] for r in runs])), 4)
    metrics = first["test"].keys()
    out["test"] = {m: round(float(np.mean([r["test"][m] for r in runs])), 4) for m in metrics}
    out["test_std"] = {m: round(float(np.std([r["test"][m] for r in runs])), 4) for m in metrics}
    out["per_seed_test"] = [r["test"] for r in runs]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default="ml-100k")
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap epochs (speed runs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--one", nargs=5, metavar=("DATASET", "MODEL", "SEED", "MAX_EPOCHS", "THREADS"),
                    help=argparse.SUPPRESS)  # fmt: skip
    a = ap.parse_args()
    if a.one:
        ds, model, seed, max_ep, threads = a.one
        res = run_one(ds, model, int(seed), int(max_ep) or None, int(threads))
        print(json.dumps(res))
        return
    jobs = [
        [ds, m, s, str(a.max_epochs or 0), str(a.threads)]
        for ds in a.datasets.split(",") for m in a.models.split(",") for s in a.seeds.split(",")
    ]  # fmt: skip
    with ThreadPoolExecutor(a.jobs) as pool:
        runs = list(pool.map(_child, jobs))
    for r in runs:
        if "error" in r:
            print("FAILED", r["cmd"], r["error"], file=sys.stderr)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        if "error" not in r:
            groups.setdefault((r["dataset"], r["model"]), []).append(r)
    command = "python benchmarks/backbones.py " + " ".join(sys.argv[1:])
    rows = [{**aggregate(g), "command": command} for g in groups.values()]
    head = f"{'dataset':12} {'model':9} {'s/epoch':>8} {'epochs':>6} {'train_s':>8} {'eval_s':>6} {'rss_mb':>7}  "
    print(head + "  ".join(f"{m:>15}" for m in REPORT))
    for r in rows:
        cells = "  ".join(f"{r['test'][m]:.4f}±{r['test_std'][m]:.4f}" for m in REPORT)
        print(f"{r['dataset']:12} {r['model']:9} {r['sec_per_epoch']:8.3f} {r['epochs']:6.0f} "
              f"{r['train_s']:8.1f} {r['eval_s']:6.2f} {r['peak_rss_mb']:7.0f}  {cells}")  # fmt: skip
    out = Path(a.out)
    previous = json.loads(out.read_text()) if out.exists() else {"results": []}
    fresh = {(r["dataset"], r["model"]) for r in rows}
    kept = [r for r in previous.get("results", []) if (r["dataset"], r["model"]) not in fresh]
    record = {
        "results": sorted(kept + rows, key=lambda r: (r["dataset"], ALL_MODELS.index(r["model"])))
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
