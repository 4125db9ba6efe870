"""Which token prefix the requests of a group (one user) share, and where each task's header
extends it (:func:`plan_prefixes`): what :class:`~.prefix_cached.PrefixCachedScorer` encodes once."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from .requests import ScoreRequest


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
