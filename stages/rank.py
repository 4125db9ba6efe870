"""Stage `rank`: the tuned LLM scores every test instruction of one (dataset, backbone).

Reads data/instructions/test/<ds>/<bb>.jsonl, models/base/ (+ models/llm/<rank.model>/) and
data/processed/<ds>/stats.json (rating scale); writes data/predictions/<ds>/<bb>/<task>.jsonl
(one directory, atomically) and metrics/rank/<ds>/<bb>.json (counts, seconds, candidates/s).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from stages import paths
from stages.common import params


def read_instructions(path: Path, tasks) -> list:
    """Test instructions of the selected tasks; a malformed line fails naming file:line."""
    from recranker.io import read_jsonl
    from recranker.ranking import parse_instruction

    out = []
    for row, where in read_jsonl(path, missing="run the `instruct` stage first"):
        ins = parse_instruction(row, where)
        if ins.task in tasks:
            out.append(ins)
    return out


def rating_scale(dataset: str):
    from recranker.errors import RecrankerError
    from recranker.prompts.text import RatingScale

    path = paths.processed(dataset) / "stats.json"
    try:
        stats = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecrankerError(f"{path}: not found (run `recranker prepare --dataset {dataset}`)") from None
    return RatingScale.from_stats(stats)


def tuned_dir(kind: str) -> Path | None:
    """models/llm/<kind>/ for a tuned model, None for the untuned base."""
    from recranker.errors import RecrankerError

    if kind == "base":
        return None
    d = paths.llm(kind)
    if not d.is_dir():
        raise RecrankerError(f"{d}: not found (run `recranker {kind}`, or set rank.model: base)")
    return d


def make_backend(p, progress: bool = True):
    """The configured backend (rank.backend) with the configured model."""
    rp = p.rank
    if rp.backend == "hf":
        import torch

        from recranker.llm.backends.hf import HFBackend

        if rp.threads:
            torch.set_num_threads(rp.threads)
        workers = 1 if torch.cuda.is_available() else min(rp.workers, torch.get_num_threads())
        return HFBackend.from_dirs(
            paths.base_model(), tuned_dir(rp.model), dtype=rp.dtype,
            batch_size=rp.batch_size, min_prefix=rp.min_prefix, progress=progress,
            workers=workers, threads=torch.get_num_threads() // workers,
        )
    if rp.backend == "openai":
        from recranker.llm.backends.openai import OpenAIBackend

        o = rp.openai
        tokenizer = None
        if (paths.base_model() / "tokenizer_config.json").is_file():
            from recranker.llm.model import load_tokenizer

            tokenizer = load_tokenizer(str(paths.base_model()))  # exact label log-probs via echo
        return OpenAIBackend(o.base_url, o.model, tokenizer=tokenizer, api_key_env=o.api_key_env,
                             timeout=o.timeout, max_retries=o.max_retries, top_logprobs=o.top_logprobs,
                             batch_size=rp.batch_size)
    from recranker.llm.backends.vllm import VLLMBackend

    v = rp.vllm
    return VLLMBackend(str(paths.base_model()), tuned_dir(rp.model), dtype=rp.dtype,
                       gpu_memory_utilization=v.gpu_memory_utilization, max_lora_rank=v.max_lora_rank,
                       max_model_len=v.max_model_len, enable_prefix_caching=v.enable_prefix_caching,
                       seed=p.seed)


def rank(
    dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets)."),
    backbone: str = typer.Option(..., help="Backbone whose candidates the test instructions hold."),
    split: str = typer.Option("test", help="test, or valid (the prompts that choose the hybrid's weights)."),
) -> None:
    """Score ranking instructions → data/{predictions,valid_predictions}/<dataset>/<backbone>/<task>.jsonl."""
    from recranker.io import atomic_path, write_json, write_jsonl
    from recranker.llm.backends.base import Sampling
    from recranker.ranking import run_tasks
    from recranker.tracking import start_run

    p = params()
    p.dataset(dataset)
    rp = p.rank
    if split not in ("valid", "test"):
        from recranker.errors import RecrankerError

        raise RecrankerError(f"--split: must be valid or test, got '{split}'")
    instructions = read_instructions(paths.ranking_instructions(dataset, backbone, split), rp.tasks)
    by_task = {t: [ins for ins in instructions if ins.task == t] for t in rp.tasks}
    scale = rating_scale(dataset)
    sampling = Sampling(temperature=rp.sampling.temperature, top_k=rp.sampling.top_k,
                        top_p=rp.sampling.top_p, max_new_tokens=rp.sampling.max_new_tokens, seed=p.seed)
    with start_run(f"rank:{dataset}:{backbone}", rp.model_dump()) as run, make_backend(p) as backend, \
            atomic_path(paths.predictions(dataset, backbone, split), is_dir=True) as out:
        t0 = time.perf_counter()
        results = run_tasks(backend, by_task, scale=scale, rating_mode=rp.rating_mode,
                            listwise_mode=rp.listwise_mode, sampling=sampling)
        secs = time.perf_counter() - t0
        n_cands = sum(len(ins.candidates) for ins in instructions)
        metrics: dict = {
            "backend": rp.backend, "model": rp.model, "dtype": rp.dtype,
            "workers": getattr(getattr(backend, "scorer", None), "workers", 1), "seconds": round(secs, 3),
            "instructions": len(instructions), "users": len({ins.user_id for ins in instructions}),
            "candidates": n_cands, "candidates_per_s": round(n_cands / secs, 3) if secs > 0 else None,
            "prompts_per_s": round(len(instructions) / secs, 3) if secs > 0 else None, "tasks": {},
        }
        stats = getattr(getattr(backend, "scorer", None), "stats", None)
        if stats is not None and secs > 0:
            metrics.update(prompt_tokens=stats.prompt_tokens, computed_tokens=stats.computed_tokens,
                           computed_tokens_per_s=round(stats.computed_tokens / secs, 1))
        for task, (rows, extra) in results.items():
            write_jsonl(out / f"{task}.jsonl", rows)
            todo = by_task[task]
            metrics["tasks"][task] = {"instructions": len(todo), "users": len({i.user_id for i in todo}),
                                      "candidates": sum(len(i.candidates) for i in todo), **extra}
        run.summary({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    name = backbone if split == "test" else f"{backbone}_valid"
    write_json(paths.metrics("rank") / dataset / f"{name}.json", metrics)
    typer.echo(f"rank {dataset}/{backbone} ({split}): {len(instructions)} instructions ({', '.join(rp.tasks)}), "
               f"{n_cands} candidates in {secs:.1f}s ({metrics['candidates_per_s']}/s)")
