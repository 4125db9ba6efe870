"""Scoring spread over worker processes (one :class:`~.prefix_cached.PrefixCachedScorer` each):
single-thread processes on a CPU, or one process per GPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from recranker.errors import RecrankerError

from .prefix_cached import PrefixCachedScorer
from .prefixes import group_members
from .requests import ScoreRequest, ScoreResult, ScorerStats


def _exit_with_parent(parent: int) -> None:
    """A worker must not outlive a killed stage (it would keep both cores busy)."""
    import os
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _init_worker(load: Callable[[str], Any], threads: int, scorer_kwargs: dict, parent: int,
                 devices) -> None:
    """Build this worker's scorer on the next free device of ``devices`` (a queue: each worker
    takes one, so every GPU gets exactly one worker)."""
    global _WORKER_SCORER
    import threading

    import torch

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    device = devices.get()
    if device.startswith("cuda"):
        torch.cuda.set_device(device)  # kernels and caches of this process on its own GPU
    _WORKER_SCORER = PrefixCachedScorer(load(device), **scorer_kwargs)


def _score_in_worker(requests: list[ScoreRequest]) -> tuple[list[ScoreResult], int, int]:
    assert _WORKER_SCORER is not None, "worker not initialised"
    stats = _WORKER_SCORER.stats
    tokens, forwards = stats.computed_tokens, stats.forwards
    results = _WORKER_SCORER.score(requests)
    return results, stats.computed_tokens - tokens, stats.forwards - forwards


class ShardedScorer:
    """A :class:`PrefixCachedScorer` spread over ``workers`` processes with ``threads`` torch
    threads each: on ``devices`` (one per worker, e.g. ``["cuda:0", "cuda:1"]`` for one scorer
    per GPU; default all "cpu").

    Why on a CPU: one user's suffix batches are small matmuls, which two threads share poorly (1.73× over
    one thread on this project's 2-core machine), while two single-thread processes scoring
    different users reach 1.96×. Groups (users) are never split, so a grouped request gets the
    same cached prefix and the same suffix batch as with a single scorer; chunks of groups go to
    whichever worker is free. ``load(device)`` builds the model on ``device`` inside each worker (a
    picklable callable: spawned processes cannot inherit a model safely from a process that has
    used OpenMP threads, nor a CUDA context).
    """

    def __init__(self, load: Callable[[str], Any], *, workers: int, threads: int = 1,
                 devices: Sequence[str] | None = None, chunk_groups: int = 8, progress: bool = False,
                 **scorer_kwargs):
        if workers < 2:
            raise RecrankerError(f"rank.workers: a sharded scorer needs >= 2 workers (got {workers})")
        self.devices = list(devices) if devices is not None else ["cpu"] * workers
        if len(self.devices) != workers:
            raise RecrankerError(f"{workers} scorer workers but {len(self.devices)} devices")
        self.load, self.workers, self.threads = load, workers, max(1, threads)
        self.chunk_groups = chunk_groups
        self.progress = progress
        self.scorer_kwargs = {**scorer_kwargs, "progress": False}
        self.pad_token_id = int(scorer_kwargs.get("pad_token_id", 0))  # same attribute as PrefixCachedScorer
        self.stats = ScorerStats()
        self._pool = None

    def _executor(self):
        if self._pool is None:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")
            devices = context.Queue()
            for device in self.devices:
                devices.put(device)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_init_worker,
                initargs=(self.load, self.threads, self.scorer_kwargs, os.getpid(), devices),
            )
        return self._pool

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        members = group_members(requests)
        chunks = [[i for group in members[s : s + self.chunk_groups] for i in group]
                  for s in range(0, len(members), self.chunk_groups)]
        results: list[ScoreResult | None] = [None] * len(requests)
        bar = None
        if self.progress:
            from recranker.progress import progress_bar

            bar = progress_bar(len(requests), f"scoring ({self.workers} workers)", "prompt")
        futures = [self._executor().submit(_score_in_worker, [requests[i] for i in chunk]) for chunk in chunks]
        for chunk, fut in zip(chunks, futures):
            res, tokens, forwards = fut.result()
            for i, r in zip(chunk, res):
                results[i] = r
            self.stats.computed_tokens += tokens
            self.stats.forwards += forwards
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        self.stats.requests += len(requests)
        self.stats.prompt_tokens += sum(len(r.tokens) for r in requests)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
