"""Stage `rank`: the tuned LLM scores every test instruction of one (dataset, backbone).

Reads data/instructions/test/<ds>/<bb>.jsonl, models/base/ (+ models/llm/<rank.model>/),
data/processed/<ds>/ (rating scale; held-out items) and models/backbones/<ds>/<bb>/candidates.parquet
(rank.users: which users any re-ranking can change); writes data/predictions/<ds>/<bb>/<task>.jsonl
(one directory, atomically) and metrics/rank/<ds>/<bb>.json (counts, seconds, candidates/s).
"""

from __future__ import annotations

import time

import typer

from stages import artifacts, paths
from stages.common import params


def _device(backend) -> str | None:
    """Where the hf backend scored (e.g. "cpu", "cuda:0" or "cuda:0,cuda:1"); None for a server."""
    scorer = getattr(backend, "scorer", None)
    devices = getattr(scorer, "devices", None) or [getattr(scorer, "device", None)]
    return ",".join(str(d) for d in devices) if devices[0] is not None else None


def rank(
    dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets)."),
    backbone: str = typer.Option(..., help="Backbone whose candidates the test instructions hold."),
    split: str = typer.Option("test", help="test, or valid (the prompts that choose the hybrid's weights)."),
) -> None:
    """Score ranking instructions → data/{predictions,valid_predictions}/<dataset>/<backbone>/<task>.jsonl.

    With rank.users: item_in_candidates only the users whose held-out item is among the backbone's
    candidates are scored: the others are misses whatever the LLM says."""
    from recranker.io import atomic_path, write_json, write_jsonl
    from recranker.llm.backends.base import Sampling
    from recranker.llm.backends.factory import make_backend
    from recranker.llm.precision import default_device, resolve
    from recranker.prompts.text import RatingScale
    from recranker.ranking.instructions import parse_instruction
    from recranker.ranking.tasks import run_tasks
    from recranker.tracking import start_run

    p = params("rank")
    p.dataset(dataset)
    rp = p.rank
    if rp.backend != "openai":  # auto → the dtype this machine runs natively (recorded in metrics)
        rp = rp.model_copy(update={"dtype": resolve(rp.dtype, default_device(), param="rank.dtype")})
    if split not in ("valid", "test"):
        from recranker.errors import RecrankerError

        raise RecrankerError(f"--split: must be valid or test, got '{split}'")
    instructions = artifacts.test_instructions(dataset, backbone, rp.tasks, parse_instruction, split)
    n_all, users_all = len(instructions), len({ins.user_id for ins in instructions})
    if rp.users == "item_in_candidates":  # the held-out item decides only whose prompts are scored
        from recranker.ranking.hybrid import users_with_target_in_candidates

        keep = users_with_target_in_candidates(*artifacts.candidates_and_targets(dataset, backbone, split))
        instructions = [ins for ins in instructions if ins.user_id in keep]
    by_task = {t: [ins for ins in instructions if ins.task == t] for t in rp.tasks}
    scale = RatingScale.from_stats(artifacts.stats(dataset))
    sampling = Sampling.of(rp.sampling, seed=p.seed)
    with start_run(f"rank:{dataset}:{backbone}", rp.model_dump()) as run, make_backend(
            rp, paths.base_model(), artifacts.tuned_dir(rp.model), seed=p.seed) as backend, \
            atomic_path(paths.predictions(dataset, backbone, split), is_dir=True) as out:
        t0 = time.perf_counter()
        results = run_tasks(backend, by_task, scale=scale, rating_mode=rp.rating_mode,
                            listwise_mode=rp.listwise_mode, sampling=sampling)
        secs = time.perf_counter() - t0
        n_cands = sum(len(ins.candidates) for ins in instructions)
        metrics: dict = {
            "backend": rp.backend, "model": rp.model, "dtype": rp.dtype,
            "workers": getattr(getattr(backend, "scorer", None), "workers", 1), "device": _device(backend),
            "seconds": round(secs, 3),
            "instructions": len(instructions), "users": len({ins.user_id for ins in instructions}),
            "users_policy": rp.users, "users_in_file": users_all, "instructions_in_file": n_all,
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
