"""Ranking throughput: our scorer vs the naive way, on ML-100K test instructions.

(a) ours: answers read from next-token probabilities (`hf` backend: one prefix per user,
    cached; batched suffixes sorted by length; logits of the last position only), in fp32 and
    bf16 in one process, and as the `rank` stage runs it by default: bf16, both tasks in one
    call (a user's history encoded once for both), ``rank.workers`` single-thread processes;
(b) naive: one ``generate`` call per prompt (greedy, a few new tokens) and the answer parsed
    from the text, in fp32 (transformers' default) and bf16.

Both use the pipeline's models (models/base with the SFT adapter of models/llm/sft merged).
Reports candidates/s for pointwise and pairwise (one candidate judgement per prompt), the
speed-up of the rank configuration over naive fp32 and the same-dtype ratios, tokens/s, peak
RSS, the CPU's measured 2048² matmul peak and the fraction of it reached, and how far bf16
scores move from fp32 ones. Writes benchmarks/results/rank_throughput.json.

    python benchmarks/rank_throughput.py [--instructions data/instructions/test/ml-100k/mf.jsonl]
        [--base models/base] [--adapter models/llm/sft] [--users 40] [--naive 20] [--threads 2]
        [--workers 2]

Without the instructions file, ML-100K test instructions are built on the fly from
$RECRANKER_DATA (or ../shared/data) with most-popular candidates (the instruction builder
of the pipeline, 10 candidates per user).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_instructions(n_users: int, k: int = 10) -> list[dict]:
    """ML-100K test instructions for the first ``n_users`` users, most-popular candidates."""
    import pandas as pd

    from recranker.data.process import prepare
    from recranker.data.readers import locate_raw, read_raw
    from recranker.prompts.config import InstructConfig
    from recranker.prompts.corpus import DatasetContext, make_corpus
    from recranker.prompts.ranking_rows import build_test
    from recranker.prompts.templates import domain_for_format
    from recranker.prompts.text import RatingScale

    root = os.environ.get("RECRANKER_DATA") or str(ROOT.parent / "shared" / "data")
    folder = locate_raw("ml-100k", data_root=root, allow_download=False)
    prep = prepare(read_raw("ml-100k", folder), name="ml-100k")
    inter = prep.interactions
    train = inter[inter.split == "train"]
    pop = train.item_id.value_counts().index.to_numpy()
    rows = []
    for u in sorted(inter.user_id.unique())[:n_users]:
        seen = set(inter[(inter.user_id == u) & (inter.split != "test")].item_id)
        top = [i for i in pop if i not in seen][:k]
        rows += [(u, "test", r + 1, int(i), float(k - r)) for r, i in enumerate(top)]
    cands = pd.DataFrame(rows, columns=["user_id", "split", "rank", "item_id", "score"])
    cfg = InstructConfig(tasks=["pointwise", "pairwise"], enhance=False, pairwise_both_orders=False)
    ctx = DatasetContext(name="ml-100k", domain=domain_for_format("ml-100k"),
                         scale=RatingScale.from_stats(prep.stats), like_threshold=4, dislike_threshold=2)
    corpus = make_corpus(inter, prep.items, ctx, cfg, 0)
    return list(build_test(corpus, cands, "mostpop", cfg, 0))


def load_instructions(path: Path | None, n_users: int):
    from recranker.ranking.instructions import parse_instruction

    if path is not None and path.is_file():
        rows = [json.loads(x) for x in path.open()]
        source = str(path)
    else:
        rows = build_instructions(n_users)
        source = "built: ML-100K, most-popular candidates"
    ins = [parse_instruction(r, f"{source}:{i + 1}") for i, r in enumerate(rows)
           if r["task"] in ("pointwise", "pairwise")]
    users = sorted({i.user_id for i in ins})[:n_users]
    keep = set(users)
    return [i for i in ins if i.user_id in keep], source


def matmul_peak(dtype, n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of an n×n matmul (best of ``reps``)."""
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def body_params(model) -> int:
    """Parameters that multiply every token (everything but the embedding table)."""
    emb = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - emb


def _timed(backend, todo: dict) -> tuple[dict, dict]:
    from recranker.prompts.text import RatingScale
    from recranker.ranking.tasks import run_tasks

    backend.encode_many([p for v in todo.values() for p in _prompts(v)])  # tokenizing is not scoring
    st = backend.scorer.stats
    tok0, comp0 = st.prompt_tokens, st.computed_tokens
    t = time.perf_counter()
    res = run_tasks(backend, todo, scale=RatingScale(1, 5))
    secs = time.perf_counter() - t
    n = sum(len(v) for v in todo.values())
    prompt_tokens, computed = st.prompt_tokens - tok0, st.computed_tokens - comp0
    return {"prompts": n, "seconds": secs, "cands_per_s": n / secs, "prompt_tokens": prompt_tokens,
            "computed_tokens": computed, "computed_tokens_per_s": computed / secs,
            "computed_tokens_per_cand": computed / n}, res


def run_ours(backend, instructions) -> dict:
    """Each task alone (per-task rates), then both in one call as the `rank` stage runs them
    (each user's history prefix encoded once for both tasks)."""
    first = instructions[0].user_id
    _timed(backend, {t: [i for i in instructions if i.task == t and i.user_id == first]
                     for t in ("pointwise", "pairwise")})  # warm-up (kernel selection), not timed
    out = {}
    for task in ("pointwise", "pairwise"):
        r, res = _timed(backend, {task: [i for i in instructions if i.task == task]})
        r["scores"] = [row["scores"][0] for row in res[task][0]]
        out[task] = r
        print(f"  ours {task}: {r['prompts']} prompts in {r['seconds']:.1f}s", file=sys.stderr, flush=True)
    out["both"], _ = _timed(backend, {t: [i for i in instructions if i.task == t] for t in ("pointwise", "pairwise")})
    return out


def _prompts(instructions):
    from recranker.llm.backends.base import Prompt

    return [Prompt.from_messages(i.messages, i.user_id) for i in instructions]


def run_naive(model, tok, instructions, n: int, max_new_tokens: int = 4) -> dict:
    """One greedy ``generate`` per prompt, then parse the answer text."""
    import torch

    from recranker.llm.scoring import encode_chat

    out = {}
    for task in ("pointwise", "pairwise"):
        todo = [i for i in instructions if i.task == task][:n]
        parsed, tokens = 0, 0
        with torch.inference_mode():  # warm-up, not timed
            ids = torch.tensor([encode_chat(tok, todo[0].messages)])
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                           max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                           temperature=None, top_p=None, top_k=None)
        t = time.perf_counter()
        with torch.inference_mode():
            for ins in todo:
                ids = torch.tensor([encode_chat(tok, ins.messages)])
                gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                     temperature=None, top_p=None, top_k=None)
                text = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
                tokens += ids.shape[1]
                if task == "pointwise":
                    parsed += re.search(r"[1-5]", text) is not None
                else:
                    parsed += re.match(r"\s*(yes|no)\b", text, re.IGNORECASE) is not None
        secs = time.perf_counter() - t
        out[task] = {"prompts": len(todo), "seconds": secs, "cands_per_s": len(todo) / secs,
                     "prompt_tokens_per_s": tokens / secs, "parsed_answers": parsed,
                     "max_new_tokens": max_new_tokens}
    return out


def bf16_vs_fp32(instructions, s32: dict, s16: dict) -> dict:
    """How far bf16 scores move: abs differences, per-user Kendall tau (pointwise), decision
    agreement (pairwise)."""
    from scipy.stats import kendalltau

    a, b = np.array(s32["pointwise"]), np.array(s16["pointwise"])
    users = [i.user_id for i in instructions if i.task == "pointwise"]
    taus = []
    for u in sorted(set(users)):
        m = np.array([x == u for x in users])
        if m.sum() > 1 and np.ptp(a[m]) > 0:
            taus.append(kendalltau(a[m], b[m])[0])
    pa, pb = np.array(s32["pairwise"]), np.array(s16["pairwise"])
    return {"pointwise_max_abs_diff": float(np.abs(a - b).max()),
            "pointwise_mean_abs_diff": float(np.abs(a - b).mean()),
            "pointwise_mean_within_user_spread": float(np.mean([np.ptp(a[np.array(users) == u])
                                                                for u in set(users)])),
            "pointwise_kendall_tau_mean": float(np.mean(taus)) if taus else None,
            "pairwise_max_abs_diff": float(np.abs(pa - pb).max()),
            "pairwise_decision_agreement": float(np.mean((pa > 0.5) == (pb > 0.5)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instructions", type=Path, default=ROOT / "data/instructions/test/ml-100k/mf.jsonl")
    ap.add_argument("--base", type=Path, default=ROOT / "models/base")
    ap.add_argument("--adapter", type=Path, default=ROOT / "models/llm/sft",
                    help="the tuned adapter the rank stage uses (skipped when absent)")
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--naive", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="rank.workers of the pipeline configuration")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rank_throughput.json")
    args = ap.parse_args()

    import torch

    from recranker.llm.backends.hf import HFBackend, load_hf

    torch.set_num_threads(args.threads)
    instructions, source = load_instructions(args.instructions, args.users)
    if not args.base.is_dir():
        raise SystemExit(f"{args.base}: no saved base model (run `dvc repro base-model`); the worker "
                         "processes of the rank configuration load it from a directory")
    src, adapter = str(args.base), str(args.adapter) if args.adapter.is_dir() else None
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    result: dict = {"command": "python benchmarks/rank_throughput.py " + " ".join(sys.argv[1:]),
                    "instructions": source, "users": len({i.user_id for i in instructions}),
                    "prompts": len(instructions), "threads": args.threads, "model": src, "adapter": adapter,
                    "cpu": platform.processor() or platform.machine(),
                    "matmul_2048_gflops": {"float32": peak32, "bfloat16": peak16}}
    ours, naive, scores = {}, {}, {}
    for dtype in ("float32", "bfloat16"):
        model, tok = load_hf(src, adapter, dtype)
        r = run_ours(HFBackend(model, tok, batch_size=args.batch_size), instructions)
        scores[dtype] = {t: r[t].pop("scores") for t in ("pointwise", "pairwise")}
        flops = 2 * body_params(model) * r["both"]["computed_tokens"]
        r["both"]["gflops"] = flops / r["both"]["seconds"] / 1e9
        r["both"]["fraction_of_matmul_peak"] = r["both"]["gflops"] / (peak32 if dtype == "float32" else peak16)
        ours[dtype] = r
        naive[dtype] = run_naive(model, tok, instructions, args.naive)
        print(f"  naive {dtype}: {naive[dtype]['pointwise']['seconds'] + naive[dtype]['pairwise']['seconds']:.1f}s",
              file=sys.stderr, flush=True)
        del model
    with HFBackend.from_dirs(src, adapter, "bfloat16", batch_size=args.batch_size, workers=args.workers,
                             threads=max(1, args.threads // args.workers)) as backend:
        # Chunks of 2 users, so that a few dozen users spread over the workers as evenly as the
        # rank stage's 943 users do in chunks of 8; one warm-up chunk per worker, not timed.
        backend.scorer.chunk_groups = 2
        warm = sorted({i.user_id for i in instructions})[: 2 * args.workers]
        _timed(backend, {"pointwise": [i for i in instructions if i.task == "pointwise" and i.user_id in warm]})
        pipeline, _ = _timed(backend, {t: [i for i in instructions if i.task == t] for t in ("pointwise", "pairwise")})
    pipeline["workers"] = args.workers
    result.update(ours=ours, pipeline=pipeline, naive=naive,
                  bf16_vs_fp32=bf16_vs_fp32(instructions, *scores.values()))

    def rate(x):  # candidate judgements per second over both tasks
        return x["prompts"] / x["seconds"]

    naive32 = {"prompts": sum(naive["float32"][t]["prompts"] for t in ("pointwise", "pairwise")),
               "seconds": sum(naive["float32"][t]["seconds"] for t in ("pointwise", "pairwise"))}
    naive16 = {"prompts": sum(naive["bfloat16"][t]["prompts"] for t in ("pointwise", "pairwise")),
               "seconds": sum(naive["bfloat16"][t]["seconds"] for t in ("pointwise", "pairwise"))}
    # Headline: the `rank` stage's configuration against the naive way with transformers' default
    # dtype; the same-dtype ratios say how much is the scorer alone.
    result["ours_cands_per_s"] = rate(pipeline)
    result["naive_cands_per_s"] = rate(naive32)
    result["speedup"] = rate(pipeline) / rate(naive32)
    result["speedup_same_dtype"] = {"float32 (1 process)": rate(ours["float32"]["both"]) / rate(naive32),
                                    "bfloat16 (1 process)": rate(ours["bfloat16"]["both"]) / rate(naive16),
                                    f"bfloat16 ({args.workers} workers)": rate(pipeline) / rate(naive16)}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_average"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")

    print(f"{'candidates/s':34s}{'pointwise':>11s}{'pairwise':>10s}{'both':>8s}{'computed tok/s':>16s}")
    for dtype, o in ours.items():
        print(f"{'ours ' + dtype + ' (1 process)':34s}{o['pointwise']['cands_per_s']:11.2f}"
              f"{o['pairwise']['cands_per_s']:10.2f}{rate(o['both']):8.2f}{o['both']['computed_tokens_per_s']:16.0f}")
    print(f"{f'ours bfloat16 ({args.workers} workers) = rank':34s}{'':11s}{'':10s}{rate(pipeline):8.2f}"
          f"{pipeline['computed_tokens_per_s']:16.0f}")
    for dtype, nv in (("float32", naive32), ("bfloat16", naive16)):
        print(f"{'naive ' + dtype:34s}{naive[dtype]['pointwise']['cands_per_s']:11.2f}"
              f"{naive[dtype]['pairwise']['cands_per_s']:10.2f}{rate(nv):8.2f}")
    same = ", ".join(f"{k} {v:.1f}x" for k, v in result["speedup_same_dtype"].items())
    print(f"speedup {result['speedup']:.1f}x (rank configuration vs naive float32); same dtype: {same}; "
          f"matmul peak {peak32:.0f}/{peak16:.0f} GFLOP/s fp32/bf16; peak RSS {result['peak_rss_mb']:.0f} MB"
          f" -> {args.out}")


if __name__ == "__main__":
    main()
