"""Training speed on this CPU: SFT and DMPO (k = 1, 3, 5), fp32 vs bf16 autocast, peak RSS.

Each configuration runs in its own subprocess (so peak RSS is its own) on the default model
(SmolLM2-135M converted from the offline GGUF) with RecRanker-like prompts (~300 tokens: a
user's rated history from ML-100K titles when available, else synthetic titles).

    .venv/bin/python benchmarks/training.py            # table + benchmarks/results/training.json
    .venv/bin/python benchmarks/training.py --steps 4 --threads 2 --base models/base

bf16's accuracy cost is read off the loss curves: the same seed and data in fp32 and in bf16
autocast, so the largest per-step loss difference is the precision's effect alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "training.json"


def titles() -> list[str]:
    for d in (os.environ.get("RECRANKER_DATA"), ROOT.parent / "shared" / "data"):
        f = Path(d or "/nonexistent") / "ml-100k" / "u.item"
        if f.exists():
            return [line.split("|")[1] for line in f.read_text(encoding="latin-1").splitlines() if "|" in line]
    return [f"Synthetic Film Number {i} ({1950 + i % 50})" for i in range(1000)]


def prompt(i: int, names: list[str]) -> list[dict]:
    hist = "; ".join(f"{names[(i * 7 + j * 13) % len(names)]}: {1 + (i + j) % 5}" for j in range(12))
    return [{"role": "system", "content": "You are a movie recommender. Answer with a rating only."},
            {"role": "user", "content": f"The user rated these movies (title: rating): {hist}. "
                                        f"How would the user rate {names[(i * 31) % len(names)]}? Answer 1-5."}]


def run_one(kind: str, k: int, bf16: bool, steps: int, base: str, work: Path) -> dict:
    import torch

    from recranker.dmpo.config import DMPOSettings
    from recranker.dmpo.train import train_dmpo
    from recranker.llm.config import SFTSettings
    from recranker.llm.sft import train_sft

    names = titles()
    common = {"max_steps": steps, "warmup_steps": 0, "bf16": bf16, "save_steps": 10_000, "max_length": 384}
    run = {"seed": 0, "checkpoint_dir": str(work / "ckpt")}
    if kind == "sft":
        recs = [{"messages": prompt(i, names), "completion": str(1 + i % 5)} for i in range(4 * steps)]
        rep = train_sft(base, recs, [], work / "out", SFTSettings(batch_size=4, grad_accum=1, group_by_length=False, **common).with_run(**run))
    else:
        sft_dir = work / "sft0"
        if not sft_dir.exists():  # a 1-step adapter: DMPO needs an SFT adapter to start from
            recs = [{"messages": prompt(i, names), "completion": "3"} for i in range(4)]
            one_step = SFTSettings(**{**common, "max_steps": 1, "bf16": False}, batch_size=4, grad_accum=1,
                                   group_by_length=False)
            train_sft(base, recs, [], sft_dir, one_step.with_run(**run))
        pos = names
        prefs = [{"pairs": [{"prompt": prompt(i, names), "chosen": f"{pos[i % len(pos)]}, {neg}",
                             "rejected": f"{neg}, {pos[i % len(pos)]}"}
                            for neg in (names[(i + 17 * j + 1) % len(names)] for j in range(k))]}
                 for i in range(2 * steps)]
        rep = train_dmpo(sft_dir, base, prefs, work / "out", DMPOSettings(k=k, batch_size=2, grad_accum=1, lr=1e-4, **common).with_run(**run))
    # the first step includes one-off costs (allocations); report the steady state when possible
    hist = rep["curve"]
    return {
        "kind": kind, "k": k, "bf16": bf16, "steps": rep["steps"], "seconds": rep["seconds"],
        "s_per_step": rep["seconds"] / max(1, rep["steps"]),
        "tokens": rep.get("tokens"),
        "tokens_per_s": (rep["tokens"] / rep["seconds"]) if rep.get("tokens") else None,
        "final_loss": hist[-1]["loss"] if hist else None,
        "losses": [h["loss"] for h in hist],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "threads": torch.get_num_threads(),
    }


def count_parameters(base: Path) -> int:
    """Parameters of the model in ``base`` (read from the safetensors headers, no weights loaded)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(Path(base).glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                n = 1
                for d in fh.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base", default=None, help="a saved base model dir (default: convert the offline GGUF)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: kind:k:bf16:work
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.one:
        kind, k, bf16, work = args.one.split(":", 3)
        res = run_one(kind, int(k), bf16 == "1", args.steps, args.base, Path(work))
        print("RESULT " + json.dumps(res))
        return

    with tempfile.TemporaryDirectory(prefix="recranker-bench-") as tmp:
        tmp = Path(tmp)
        base = args.base
        if base is None:
            from recranker.llm.model import OFFLINE_DEFAULT, load_model, load_tokenizer, save_base

            t0 = time.perf_counter()
            save_base(load_model(OFFLINE_DEFAULT), load_tokenizer(OFFLINE_DEFAULT), tmp / "base")
            print(f"converted the offline default in {time.perf_counter() - t0:.0f}s")
            base = str(tmp / "base")
        n_params = count_parameters(base)
        configs = [("sft", 0, False), ("sft", 0, True), ("dmpo", 1, False), ("dmpo", 3, False), ("dmpo", 5, False),
                   ("dmpo", 3, True)]
        rows = []
        for kind, k, bf16 in configs:
            work = tmp / "work"
            work.mkdir(exist_ok=True)
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--threads", str(args.threads),
                   "--base", base, "--one", f"{kind}:{k}:{int(bf16)}:{work}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{kind} k={k} bf16={bf16} failed")
            rows.append(json.loads(line[7:]))
            for sub in ("out", "ckpt"):
                shutil.rmtree(work / sub, ignore_errors=True)
            r = rows[-1]
            print(f"{kind:5s} k={k} {'bf16' if bf16 else 'fp32'}: {r['s_per_step']:.2f} s/step, "
                  f"peak {r['peak_rss_gb']:.2f} GB", flush=True)

    print("\n| stage | k | precision | s / optimizer step | tokens/s | peak RSS (GB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        tps = f"{r['tokens_per_s']:.0f}" if r["tokens_per_s"] else "–"
        print(f"| {r['kind']} | {r['k'] or '–'} | {'bf16' if r['bf16'] else 'fp32'} | {r['s_per_step']:.2f} | "
              f"{tps} | {r['peak_rss_gb']:.2f} |")
    for r in rows:  # bf16 vs the fp32 run of the same stage and k
        if r["bf16"]:
            ref = next(x for x in rows if (x["kind"], x["k"], x["bf16"]) == (r["kind"], r["k"], False))
            r["speedup_vs_fp32"] = ref["s_per_step"] / r["s_per_step"]
            r["max_loss_diff_vs_fp32"] = max(abs(a - b) for a, b in zip(r["losses"], ref["losses"], strict=True))
            print(f"{r['kind']} k={r['k']} bf16 vs fp32: {r['speedup_vs_fp32']:.2f}x speed, "
                  f"max loss difference {r['max_loss_diff_vs_fp32']:.4f}")
    # Training costs ~6 FLOPs per parameter and token (forward + backward): the model's rate beside
    # what this CPU's matmul reaches at the same precision says how much a faster kernel could give.
    import torch
    from rank_throughput import matmul_peak

    torch.set_num_threads(args.threads)
    peak = {False: matmul_peak(torch.float32), True: matmul_peak(torch.bfloat16)}
    for r in rows:
        if r["tokens_per_s"]:
            r["model_gflops"] = 6 * n_params * r["tokens_per_s"] / 1e9
            r["matmul_peak_gflops"] = peak[r["bf16"]]
            r["fraction_of_matmul_peak"] = r["model_gflops"] / peak[r["bf16"]]
            print(f"{r['kind']} k={r['k']} {'bf16' if r['bf16'] else 'fp32'}: {r['tokens_per_s']:.0f} tokens/s = "
                  f"{r['model_gflops']:.0f} GFLOP/s, {100 * r['fraction_of_matmul_peak']:.0f}% of the measured "
                  f"2048² matmul ({peak[r['bf16']]:.0f} GFLOP/s)")
    sft = next(r for r in rows if r["kind"] == "sft" and not r["bf16"])
    print(f"\ndefault SFT profile (30 steps, batch 4, max_length 384): ~{30 * sft['s_per_step'] / 60:.1f} min "
          f"of optimizer steps")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"command": " ".join(sys.argv), "steps": args.steps, "threads": args.threads,
                                   "cpu_count": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
