"""Speed and accuracy of the backbones: ML-100K and a synthetic ML-1M-sized dataset.

Each (dataset, model, seed) runs in its own child process (so peak RSS is that run's own),
with ``--threads`` torch threads; ``--jobs`` children run side by side. Prints a table (test
metrics as mean ± std over seeds) and writes benchmarks/results/backbones.json with one object
per (model, dataset): sec_per_epoch, epochs, best_epoch, train_s, eval_s, peak_rss_mb, test
metrics (means), per-seed metrics and the std.

    python benchmarks/backbones.py                                   # ML-100K, all models, seed 0
    python benchmarks/backbones.py --seeds 0,1,2 --models mf,lightgcn
    python benchmarks/backbones.py --datasets ml-1m-synth --max-epochs 3   # speed only
    python benchmarks/backbones.py --models mf --set mf.weight_decay=1e-3 --out /tmp/mf.json
    python benchmarks/backbones.py --models mf,lightgcn --recbole /path/to/recbole-venv/bin/python

``--set MODEL.KEY=VALUE`` overrides a hyper-parameter of the defaults (stages/params/backbone.py)
for a tuning run; the overrides are recorded in the JSON row.

``--recbole PYTHON`` also trains RecBole's implementation of each model it has (MF-BPR,
LightGCN, SGL, SASRec, BERT4Rec) on the same split and hyper-parameters (seeds: --seeds, or
--recbole-seeds), with PYTHON
(an interpreter where ``pip install recbole`` worked; it is not a dependency of this project),
in the same pool of jobs, and records both sides and the seconds-per-epoch ratio under
"recbole" in the JSON. See benchmarks/recbole_child.py for how the split is handed over.

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
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
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


def parse_overrides(items: list[str]) -> dict[str, dict[str, object]]:
    """``["mf.lr=0.001", ...]`` → ``{"mf": {"lr": 0.001}}`` (values parsed as JSON when they can)."""
    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        model, dot, field = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {item!r}: expected MODEL.KEY=VALUE")
        try:
            out.setdefault(model, {})[field] = json.loads(value)
        except json.JSONDecodeError:
            out.setdefault(model, {})[field] = value
    return out


def model_config(model: str, overrides: dict[str, object]) -> dict:
    """The benchmark's hyper-parameters of ``model``: the params defaults, then ``overrides``."""
    from stages.params.backbone import BackboneParams

    section = BackboneParams().model(model)
    return section.model_validate({**section.model_dump(), **overrides}).model_dump()


def run_one(
    dataset: str, model: str, seed: int, max_epochs: int | None, threads: int, overrides: dict
) -> dict:
    """Train and evaluate once in this process; return the measurements."""
    import torch

    from recranker.backbones import build
    from recranker.backbones.ranking import evaluate
    from recranker.backbones.training import fit
    from stages.params.backbone import BackboneParams

    torch.set_num_threads(threads)
    bp = BackboneParams()
    data = load_dataset(dataset)
    net = build(model, data.n_users, data.n_items, model_config(model, overrides), seed=seed)
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


def _run(cmd: list[str], cwd: Path, tag: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if out.returncode:
        return {
            "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
            "cmd": tag,
        }
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(args_one: list[str]) -> dict:
    return _run([sys.executable, __file__, "--one", *args_one], ROOT, args_one)


def _recbole_child(cmd: list[str], cwd: Path, dataset: str) -> dict:
    return _run(cmd, cwd, cmd[3:6]) | {"dataset": dataset}


# Our model -> the hyper-parameters RecBole's counterpart takes, from our config (same values
# where both have the knob). RecBole's sequential models train on every prefix of a sequence
# as a separate example, so their batch is RecBole's default (2048 prefixes), not ours (128
# whole sequences); BPR in RecBole has no L2 term.
RECBOLE = ("mf", "lightgcn", "sgl", "sasrec", "bert4rec")


def recbole_hparams(model: str, c: dict, patience: int, max_epochs: int | None) -> dict:
    h = {"learning_rate": c["lr"], "epochs": max_epochs or c["max_epochs"],
         "stopping_step": patience}  # fmt: skip
    if model in ("mf", "lightgcn", "sgl"):
        h |= {"embedding_size": c["dim"], "train_batch_size": c["batch_size"],
              "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}  # fmt: skip
    if model in ("lightgcn", "sgl"):
        h |= {"n_layers": c["n_layers"], "reg_weight": c["weight_decay"]}
    if model == "sgl":
        h |= {"type": c["aug"].upper(), "drop_ratio": c["drop_ratio"], "ssl_tau": c["ssl_tau"],
              "ssl_weight": c["ssl_weight"]}  # fmt: skip
    if model in ("sasrec", "bert4rec"):
        h |= {"hidden_size": c["dim"], "inner_size": 4 * c["dim"], "n_layers": c["n_layers"],
              "n_heads": c["n_heads"], "hidden_dropout_prob": c["dropout"],
              "attn_dropout_prob": c["dropout"], "MAX_ITEM_LIST_LENGTH": c["max_len"],
              "loss_type": "CE", "train_neg_sample_args": None, "train_batch_size": 2048}  # fmt: skip
    if model == "bert4rec":
        h["mask_ratio"] = c["mask_prob"]
    return h


def export_for_recbole(data, path: Path) -> None:
    """Write ``data`` as RecBole's ``.inter`` file: per user, the training items, the valid item,
    the test item, with ``timestamp`` = position, so RecBole's leave-one-out by time is our split."""
    import pandas as pd

    users = np.concatenate([data.train_users, np.arange(data.n_users), np.arange(data.n_users)])
    items = np.concatenate([data.train_items, data.valid_items, data.test_items])
    frame = pd.DataFrame({"user_id:token": users, "item_id:token": items})
    frame = frame[frame["item_id:token"] >= 0]
    # Stable sort keeps train (in time order), then valid, then test within each user.
    frame = frame.iloc[np.argsort(frame["user_id:token"].to_numpy(), kind="stable")]
    frame["timestamp:float"] = frame.groupby("user_id:token").cumcount()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False)


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
    if all("valid" in r for r in runs):  # what model selection may look at (RecBole: test only)
        out["valid"] = {m: round(float(np.mean([r["valid"][m] for r in runs])), 4) for m in metrics}
    return out


def compare_recbole(theirs: list[dict], ours_rows: list[dict], command: str) -> list[dict]:
    """One object per (dataset, model) run by both: each side's aggregate and the ratio of
    RecBole's seconds per training epoch to ours (> 1: ours is faster)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in theirs:
        groups.setdefault((r["dataset"], r["model"]), []).append(r)
    ours = {(r["dataset"], r["model"]): r for r in ours_rows}
    out = []
    for key, runs in groups.items():
        if key not in ours:
            continue
        rb = aggregate(runs) | {
            "recbole_model": runs[0]["recbole_model"],
            "same_split": all(r["same_split"] for r in runs),  # checked inside RecBole's run
        }
        o = {k: ours[key][k] for k in ("sec_per_epoch", "epochs", "train_s", "test", "test_std")}
        out.append({
            "dataset": key[0], "model": key[1], "ours": o, "recbole": rb, "command": command,
            "sec_per_epoch_ratio": round(rb["sec_per_epoch"] / max(o["sec_per_epoch"], 1e-9), 2),
            "train_s_ratio": round(rb["train_s"] / max(o["train_s"], 1e-9), 2),
        })  # fmt: skip
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
    ap.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE",
                    help="override a hyper-parameter (repeatable)")
    ap.add_argument("--recbole", metavar="PYTHON",
                    help="also run RecBole's implementations with this interpreter")
    ap.add_argument("--recbole-seeds", help="RecBole's seeds (default: --seeds)")
    ap.add_argument("--one", nargs=6,
                    metavar=("DATASET", "MODEL", "SEED", "MAX_EPOCHS", "THREADS", "OVERRIDES"),
                    help=argparse.SUPPRESS)  # fmt: skip
    a = ap.parse_args()
    if a.one:
        ds, model, seed, max_ep, threads, overrides = a.one
        res = run_one(ds, model, int(seed), int(max_ep) or None, int(threads), json.loads(overrides))
        print(json.dumps(res))
        return
    overrides = parse_overrides(a.set)
    datasets, models, seeds = a.datasets.split(","), a.models.split(","), a.seeds.split(",")
    jobs = [
        (_child, [ds, m, s, str(a.max_epochs or 0), str(a.threads), json.dumps(overrides.get(m, {}))])
        for ds in datasets for m in models for s in seeds
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="recbole-") as tmp:
        if a.recbole:
            from stages.params.backbone import BackboneParams

            patience = BackboneParams().patience
            for ds in datasets:
                # Not RecBole's own names: it ships an "ml-100k" of its own and would load that.
                export_for_recbole(load_dataset(ds), Path(tmp) / f"rr-{ds}" / f"rr-{ds}.inter")
            for ds in datasets:
                for m in (m for m in models if m in RECBOLE):
                    h = json.dumps(recbole_hparams(m, model_config(m, overrides.get(m, {})),
                                                   patience, a.max_epochs))  # fmt: skip
                    for s in (a.recbole_seeds or a.seeds).split(","):
                        cmd = [a.recbole, str(ROOT / "benchmarks" / "recbole_child.py"), tmp,
                               f"rr-{ds}", m, s, str(a.threads), h]  # fmt: skip
                        jobs.append((partial(_recbole_child, cwd=Path(tmp), dataset=ds), cmd))
        with ThreadPoolExecutor(a.jobs) as pool:
            runs = list(pool.map(lambda job: job[0](job[1]), jobs))
    for r in runs:
        if "error" in r:
            print("FAILED", r["cmd"], r["error"], file=sys.stderr)
    ours = [r for r in runs if "error" not in r and "recbole_model" not in r]
    theirs = [r for r in runs if "error" not in r and "recbole_model" in r]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in ours:
        groups.setdefault((r["dataset"], r["model"]), []).append(r)
    command = "python benchmarks/backbones.py " + " ".join(sys.argv[1:])
    rows = [{**aggregate(g), "command": command} for g in groups.values()]
    for r in rows:
        if overrides.get(r["model"]):
            r["overrides"] = overrides[r["model"]]
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
    compared = compare_recbole(theirs, rows, command)
    if compared:
        print(f"\n{'dataset':12} {'model':9} {'ours s/ep':>9} {'RecBole':>8} {'ratio':>6} "
              f"{'ours ep':>7} {'RB ep':>6} {'ours train_s':>12} {'RB train_s':>10}  "
              f"{'ours HR@5/N@5':>14} {'RecBole HR@5/N@5':>16}")  # fmt: skip
        for c in compared:
            o, t = c["ours"], c["recbole"]
            print(f"{c['dataset']:12} {c['model']:9} {o['sec_per_epoch']:9.3f} "
                  f"{t['sec_per_epoch']:8.3f} {c['sec_per_epoch_ratio']:6.2f} {o['epochs']:7.0f} "
                  f"{t['epochs']:6.0f} {o['train_s']:12.1f} {t['train_s']:10.1f}  "
                  f"{o['test']['HR@5']:.4f}/{o['test']['NDCG@5']:.4f} "
                  f"{t['test']['HR@5']:>9.4f}/{t['test']['NDCG@5']:.4f}")  # fmt: skip
    fresh = {(c["dataset"], c["model"]) for c in compared}
    record["recbole"] = [
        c for c in previous.get("recbole", []) if (c["dataset"], c["model"]) not in fresh
    ] + compared
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp_out.replace(out)


if __name__ == "__main__":
    main()
