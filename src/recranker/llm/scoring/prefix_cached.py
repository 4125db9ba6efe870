"""Scoring in one process: each group's shared prefix encoded once, its KV cache expanded over
batches of the candidate-specific suffixes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from recranker.errors import RecrankerError

from .prefixes import group_members, group_prefix_len, plan_prefixes
from .requests import ScoreRequest, ScoreResult, ScorerStats


class PrefixCachedScorer:
    """Scores :class:`ScoreRequest` s with a Hugging Face causal LM (optionally peft-wrapped).

    batch_size: suffixes (or whole prompts) per forward pass.
    min_prefix: a group's shared prefix is cached only when it has at least this many tokens
        (below that the extra forward costs more than it saves).
    use_prefix_cache: False scores every prompt whole (the reference path for tests).

    Inputs are built on the device of the model's parameters (a CPU or one GPU; move the model
    there first, e.g. :func:`recranker.llm.backends.hf.load_hf` with ``device``); answers come back
    as host numpy arrays.
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
        self.device = model_device(model)
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
            from recranker.progress import progress_bar

            bar = progress_bar(len(requests), "scoring", "prompt")
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

        ids = torch.tensor([list(tokens[start:])], dtype=torch.long, device=self.device)
        kwargs = {}
        if kv is not None:
            kwargs["past_key_values"] = DynamicCache(ddp_cache_data=kv)
        out = self.model(input_ids=ids, position_ids=torch.arange(start, len(tokens), device=self.device)[None],
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
        # Built on the host, then moved in one copy each (a GPU would otherwise get one small
        # copy per row).
        ids = torch.full((b, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for row, s in enumerate(suffixes):
            ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[row, width - len(s) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0) + p
        ids, mask, pos = (t.to(self.device) for t in (ids, mask, pos))
        keep = max(requests[i].n_scored for i in chunk) + 1
        kwargs = {}
        if kv is not None:
            from transformers import DynamicCache

            kwargs["past_key_values"] = DynamicCache(
                ddp_cache_data=[(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in kv]
            )
            mask = torch.cat([torch.ones((b, p), dtype=torch.long, device=self.device), mask], dim=1)
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
            tgt = last[list(r.targets)].cpu().numpy().astype(np.float64) if r.targets else np.zeros(0)
            cont, per_tok, top = 0.0, None, None
            if r.n_scored:
                n = r.n_scored
                # logits at position t predict token t+1: the continuation's tokens are the last
                # n ids, predicted by the n positions before the final one.
                rows = logp[row, -n - 1 : -1]
                toks = torch.tensor(r.tokens[-n:], dtype=torch.long, device=self.device)
                per_tok = rows.gather(1, toks[:, None])[:, 0].double().cpu().numpy()
                cont = float(per_tok.sum())
            if r.top_k:
                vals, ids = torch.topk(last, min(r.top_k, last.numel()))
                top = [(int(t), float(v)) for t, v in zip(ids.tolist(), vals.tolist())]
            results[i] = ScoreResult(targets=tgt, continuation=cont, token_logprobs=per_tok, top=top)


def model_device(model):
    """The device of ``model``'s parameters (where its inputs must be built)."""
    import torch

    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _cache_layers(cache) -> Iterable[tuple]:
    """(keys, values) per layer for a transformers Cache (or the legacy tuple format)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(cache)


# -- several CPU worker processes -----------------------------------------------------------------

_WORKER_SCORER: PrefixCachedScorer | None = None
