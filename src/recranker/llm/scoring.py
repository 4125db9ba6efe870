"""Read answers from a causal LM's token probabilities, fast on a CPU.

RecRanker's pointwise and pairwise answers are one token ("4", "Yes"), so instead of generating
and parsing text we read the next-token distribution after the prompt: an expected rating over
the rating tokens, P(Yes) vs P(No). Listwise can be scored the same way through a verbalizer
(the log-probability of each candidate's label or title as the start of the answer).

Why it is fast:

* every test prompt of one user starts with the same user-specific text (system + history), so
  the requests of a *group* (a user) share a token prefix: it is encoded once, extended once
  per task header ("How would the user rate...", found by :func:`plan_prefixes`), and its KV
  cache is expanded over batches of the candidate-specific suffixes — one user's pointwise,
  pairwise and listwise prompts all reuse one history encoding;
* only the positions whose logits are needed are projected onto the vocabulary
  (``logits_to_keep``): one position for a next-token answer;
* suffixes are sorted by length before batching, so little padding is computed.

Correctness: the shared prefix is the longest common *token* prefix of the group's full prompts
(tokenised whole, never piecewise), so the cached computation is the same function as scoring
each full prompt alone; ``tests/test_scoring.py`` checks equality within 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recranker.errors import RecrankerError


@dataclass(frozen=True)
class ScoreRequest:
    """One sequence to score.

    tokens: the full token ids (the chat prompt, optionally followed by an answer continuation).
    n_scored: how many trailing tokens of ``tokens`` form the continuation whose summed
        log-probability is returned (0 for a plain next-token question).
    targets: token ids whose next-token log-probability after ``tokens`` is returned.
    group: requests with equal groups (e.g. one user's prompts) share their common prefix.
    top_k: also return the ``top_k`` most likely next tokens with their log-probabilities.
    """

    tokens: tuple[int, ...]
    targets: tuple[int, ...] = ()
    n_scored: int = 0
    group: Hashable = None
    top_k: int = 0  # also return the k most likely next tokens (OpenAI-style top_logprobs)


@dataclass
class ScoreResult:
    """``targets``: log-probabilities (full-vocabulary log-softmax) of the requested tokens;
    ``continuation``: summed log-probability of the last ``n_scored`` tokens (0.0 if none)."""

    targets: np.ndarray
    continuation: float = 0.0
    token_logprobs: np.ndarray | None = None  # per continuation token (n_scored values)
    top: list[tuple[int, float]] | None = None  # (token id, log-prob), most likely first


@dataclass
class ScorerStats:
    """Counters for throughput reports."""

    requests: int = 0
    prompt_tokens: int = 0  # tokens in all requests
    computed_tokens: int = 0  # tokens actually run through the model (prefixes once + suffixes + pads)
    forwards: int = 0
    extra: dict = field(default_factory=dict)


def encode_chat(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template, ready for the answer."""
    ids = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def label_token_ids(tokenizer, labels: Sequence[str]) -> list[int]:
    """The single token of each answer label (e.g. "1".."5", "Yes"/"No"), as the model would
    emit it right after the generation prompt. Raises if a label is not one token or two labels
    share a token (their probabilities could not be told apart)."""
    out: list[int] = []
    for label in labels:
        ids = tokenizer.encode(str(label), add_special_tokens=False)
        if len(ids) != 1:
            raise RecrankerError(
                f"answer label {label!r} is {len(ids)} tokens for this tokenizer; "
                "next-token scoring needs single-token labels"
            )
        out.append(int(ids[0]))
    if len(set(out)) != len(out):
        raise RecrankerError(f"answer labels {list(labels)} share tokens: {out}")
    return out


def expected_value(target_logprobs: np.ndarray, values: Sequence[float], mode: str = "expected") -> float:
    """Softmax restricted to the answer tokens, then the expected value (or the argmax value).

    The restriction renormalises away the probability the model puts elsewhere, so an untuned
    model that "barely follows the format" still yields a graded score.
    """
    lp = np.asarray(target_logprobs, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    if lp.shape != vals.shape:
        raise RecrankerError(f"{lp.size} answer log-probs for {vals.size} values")
    if mode == "argmax":
        return float(vals[int(np.argmax(lp))])
    if mode != "expected":
        raise RecrankerError(f"rank: unknown rating mode {mode!r} (expected|argmax)")
    p = np.exp(lp - lp.max())
    return float((p / p.sum()) @ vals)


def binary_probability(target_logprobs: np.ndarray) -> float:
    """P(first label) / (P(first) + P(second)), e.g. P(Yes) restricted to {Yes, No}."""
    a, b = (float(x) for x in target_logprobs[:2])
    m = max(a, b)
    ea, eb = np.exp(a - m), np.exp(b - m)
    return float(ea / (ea + eb))


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def group_prefix_len(requests: Sequence[ScoreRequest], idx: Sequence[int]) -> int:
    """Longest prefix shared by all of ``idx`` that still leaves every request the position
    predicting its first scored token (and its last token) in its suffix."""
    first = requests[idx[0]].tokens
    p = min(len(requests[i].tokens) - requests[i].n_scored - 1 for i in idx)
    for i in idx[1:]:
        p = min(p, _common_prefix_len(first, requests[i].tokens))
    return max(p, 0)


def group_members(requests: Sequence[ScoreRequest]) -> list[list[int]]:
    """Request indices per group, in first-seen order; an ungrouped request is its own group."""
    groups: dict[Hashable, list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault(("__single__", i) if r.group is None else ("g", r.group), []).append(i)
    return list(groups.values())


def plan_prefixes(
    requests: Sequence[ScoreRequest],
    idx: Sequence[int],
    min_prefix: int,
    overhead: int = 8,
    base: int = 0,
) -> list[tuple[int, list[int]]]:
    """Split one group into clusters that each share a cached prefix: [(prefix_len, members)].

    A group (one user) may hold several prefixes, e.g. one per task ("How would the user
    rate..." after the shared history) or per history permutation. Sorted lexicographically,
    requests sharing a prefix are contiguous and the common prefix of a run is the minimum of
    its adjacent common prefixes, so an exact dynamic programme over run boundaries finds the
    partition that computes the fewest tokens (``overhead`` tokens are charged per extra
    forward pass). Tokens before ``base`` are already cached and cost nothing; a cluster's
    prefix must extend ``base`` by at least ``min_prefix`` tokens. ``prefix_len == base``
    marks requests whose suffixes run straight from the base.
    """
    order = sorted(idx, key=lambda i: requests[i].tokens)
    n = len(order)
    lens = [len(requests[i].tokens) - base for i in order]
    limit = [len(requests[i].tokens) - requests[i].n_scored - 1 - base for i in order]
    adj = [_common_prefix_len(requests[order[k]].tokens, requests[order[k + 1]].tokens) - base
           for k in range(n - 1)]

    best = [0.0] + [float("inf")] * n
    cut: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    for j in range(1, n + 1):
        # Clusters order[i:j] for i = j-1 down to 0, with running sums/minima: O(n^2) overall.
        total, p_adj, p_lim = 0, None, None
        for i in range(j - 1, -1, -1):
            total += lens[i]
            p_lim = limit[i] if p_lim is None else min(p_lim, limit[i])
            if i < j - 1:
                p_adj = adj[i] if p_adj is None else min(p_adj, adj[i])
            p = 0 if p_adj is None else min(p_adj, p_lim)
            cost = total - (j - i - 1) * p + overhead if p >= min_prefix else total
            p = p if p >= min_prefix else 0
            if best[i] + cost < best[j]:
                best[j], cut[j] = best[i] + cost, (i, p)
    out: list[tuple[int, list[int]]] = []
    j = n
    while j > 0:
        i, p = cut[j]
        out.append((base + p, [order[k] for k in range(i, j)]))
        j = i
    return out[::-1]


class PrefixCachedScorer:
    """Scores :class:`ScoreRequest` s with a Hugging Face causal LM (optionally peft-wrapped).

    batch_size: suffixes (or whole prompts) per forward pass.
    min_prefix: a group's shared prefix is cached only when it has at least this many tokens
        (below that the extra forward costs more than it saves).
    use_prefix_cache: False scores every prompt whole (the reference path for tests).
    """

    def __init__(
        self,
        model,
        *,
        pad_token_id: int = 0,
        batch_size: int = 16,
        min_prefix: int = 16,
        use_prefix_cache: bool = True,
        progress: bool = False,
    ):
        if batch_size < 1:
            raise RecrankerError(f"rank: batch_size must be >= 1 (got {batch_size})")
        self.model = model.eval()
        self.pad_token_id = int(pad_token_id)
        self.batch_size = batch_size
        self.min_prefix = min_prefix
        self.use_prefix_cache = use_prefix_cache
        self.progress = progress
        self.stats = ScorerStats()

    # -- public ---------------------------------------------------------------------------

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Results in the order of ``requests``."""
        import torch

        results: list[ScoreResult | None] = [None] * len(requests)
        for i, r in enumerate(requests):
            if not r.tokens or r.n_scored >= len(r.tokens) or r.n_scored < 0:
                raise RecrankerError(
                    f"score request {i}: {len(r.tokens)} tokens cannot hold {r.n_scored} scored ones"
                )

        loose: list[int] = []  # requests scored whole
        trees: list[tuple[int, list[tuple[int, list[int]]]]] = []  # (group prefix, clusters)
        for idx in group_members(requests):
            if not self.use_prefix_cache or len(idx) == 1:
                loose.extend(idx)
                continue
            base = group_prefix_len(requests, idx)
            if base >= self.min_prefix:
                trees.append((base, plan_prefixes(requests, idx, 1, base=base)))
                continue
            plan = plan_prefixes(requests, idx, self.min_prefix)
            for p, members in plan:
                (trees.append((p, [(p, members)])) if p else loose.extend(members))

        self.stats.requests += len(requests)
        self.stats.prompt_tokens += sum(len(r.tokens) for r in requests)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(requests), desc="scoring", unit="prompt", mininterval=5)
        with torch.inference_mode():
            for base, clusters in trees:
                self._score_tree(requests, base, clusters, results)
                if bar is not None:
                    bar.update(sum(len(m) for _, m in clusters))
            order = sorted(loose, key=lambda i: len(requests[i].tokens))
            for s in range(0, len(order), self.batch_size):
                chunk = order[s : s + self.batch_size]
                self._score_batch(requests, chunk, 0, None, results)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    # -- internals ------------------------------------------------------------------------

    def _extend(self, tokens: Sequence[int], start: int, kv):
        """KV cache of ``tokens[:len(tokens)]`` given the cache ``kv`` of ``tokens[:start]``."""
        import torch
        from transformers import DynamicCache

        ids = torch.tensor([list(tokens[start:])], dtype=torch.long)
        kwargs = {}
        if kv is not None:
            kwargs["past_key_values"] = DynamicCache(ddp_cache_data=kv)
        out = self.model(input_ids=ids, position_ids=torch.arange(start, len(tokens))[None],
                         use_cache=True, logits_to_keep=1, **kwargs)
        self.stats.forwards += 1
        self.stats.computed_tokens += len(tokens) - start
        return [(k, v) for k, v, *_ in _cache_layers(out.past_key_values)]

    def _score_tree(self, requests, base: int, clusters, results) -> None:
        """Encode the group prefix once, extend it per cluster, then score suffix batches."""
        first = requests[clusters[0][1][0]].tokens
        kv_base = self._extend(first[:base], 0, None)
        for p, members in clusters:
            kv = kv_base if p == base else self._extend(requests[members[0]].tokens[:p], base, kv_base)
            order = sorted(members, key=lambda i: len(requests[i].tokens))
            for s in range(0, len(order), self.batch_size):
                self._score_batch(requests, order[s : s + self.batch_size], p, kv, results)

    def _score_batch(self, requests, chunk: list[int], p: int, kv, results) -> None:
        """Left-pad the suffixes (tokens[p:]) of ``chunk``; with a cached prefix the pads sit
        between prefix and suffix, masked out, and positions continue from the prefix."""
        import torch

        suffixes = [requests[i].tokens[p:] for i in chunk]
        width = max(len(s) for s in suffixes)
        b = len(chunk)
        ids = torch.full((b, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for row, s in enumerate(suffixes):
            ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[row, width - len(s) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0) + p
        keep = max(requests[i].n_scored for i in chunk) + 1
        kwargs = {}
        if kv is not None:
            from transformers import DynamicCache

            kwargs["past_key_values"] = DynamicCache(
                ddp_cache_data=[(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in kv]
            )
            mask = torch.cat([torch.ones((b, p), dtype=torch.long), mask], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=kv is not None,
            logits_to_keep=keep,
            **kwargs,
        )
        self.stats.forwards += 1
        self.stats.computed_tokens += b * width
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # [b, keep, V]
        for row, i in enumerate(chunk):
            r = requests[i]
            last = logp[row, -1]
            tgt = last[list(r.targets)].numpy().astype(np.float64) if r.targets else np.zeros(0)
            cont, per_tok, top = 0.0, None, None
            if r.n_scored:
                n = r.n_scored
                # logits at position t predict token t+1: the continuation's tokens are the last
                # n ids, predicted by the n positions before the final one.
                rows = logp[row, -n - 1 : -1]
                toks = torch.tensor(r.tokens[-n:], dtype=torch.long)
                per_tok = rows.gather(1, toks[:, None])[:, 0].double().numpy()
                cont = float(per_tok.sum())
            if r.top_k:
                vals, ids = torch.topk(last, min(r.top_k, last.numel()))
                top = [(int(t), float(v)) for t, v in zip(ids.tolist(), vals.tolist())]
            results[i] = ScoreResult(targets=tgt, continuation=cont, token_logprobs=per_tok, top=top)


def _cache_layers(cache) -> Iterable[tuple]:
    """(keys, values) per layer for a transformers Cache (or the legacy tuple format)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(cache)


# -- several CPU worker processes -----------------------------------------------------------------

_WORKER_SCORER: PrefixCachedScorer | None = None


def _exit_with_parent(parent: int) -> None:
    """A worker must not outlive a killed stage (it would keep both cores busy)."""
    import os
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _init_worker(load: Callable[[], Any], threads: int, scorer_kwargs: dict, parent: int) -> None:
    global _WORKER_SCORER
    import threading

    import torch

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    _WORKER_SCORER = PrefixCachedScorer(load(), **scorer_kwargs)


def _score_in_worker(requests: list[ScoreRequest]) -> tuple[list[ScoreResult], int, int]:
    assert _WORKER_SCORER is not None, "worker not initialised"
    stats = _WORKER_SCORER.stats
    tokens, forwards = stats.computed_tokens, stats.forwards
    results = _WORKER_SCORER.score(requests)
    return results, stats.computed_tokens - tokens, stats.forwards - forwards


class ShardedScorer:
    """A :class:`PrefixCachedScorer` spread over ``workers`` processes with ``threads`` torch
    threads each, for CPUs.

    Why: one user's suffix batches are small matmuls, which two threads share poorly (1.73× over
    one thread on this project's 2-core machine), while two single-thread processes scoring
    different users reach 1.96×. Groups (users) are never split, so a grouped request gets the
    same cached prefix and the same suffix batch as with a single scorer; chunks of groups go to
    whichever worker is free. ``load`` builds the model inside each worker (a picklable callable: spawned
    processes cannot inherit a model safely from a process that has used OpenMP threads).
    """

    def __init__(self, load: Callable[[], Any], *, workers: int, threads: int = 1,
                 chunk_groups: int = 8, progress: bool = False, **scorer_kwargs):
        if workers < 2:
            raise RecrankerError(f"rank.workers: a sharded scorer needs >= 2 workers (got {workers})")
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

            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(self.load, self.threads, self.scorer_kwargs, os.getpid()),
            )
        return self._pool

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        members = group_members(requests)
        chunks = [[i for group in members[s : s + self.chunk_groups] for i in group]
                  for s in range(0, len(members), self.chunk_groups)]
        results: list[ScoreResult | None] = [None] * len(requests)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(requests), desc=f"scoring ({self.workers} workers)", unit="prompt",
                       mininterval=5)
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
