"""Per-task scoring over an LLM backend: pointwise expected rating, pairwise P(Yes) (both orders
when present), listwise verbalizer or generation; ``run_tasks`` sends every probability-read
answer to the backend in one call so a prefix-caching backend encodes each history once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from recranker.errors import RecrankerError

from .instructions import TASKS, Instruction, _prompts
from .listwise import ListwiseParser, _backbone_fallback, _list_row, listwise_labels, shown_titles

# -- pointwise --------------------------------------------------------------------------------


def expected_ratings(logprobs: np.ndarray, values: Sequence[float], mode: str = "expected") -> np.ndarray:
    """Per row: softmax restricted to the rating tokens → expected rating (or argmax rating)."""
    lp = np.asarray(logprobs, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] != vals.size:
        raise RecrankerError(f"rating log-probs of shape {lp.shape} for {vals.size} rating values")
    if mode == "argmax":
        return vals[np.argmax(lp, axis=1)]
    if mode != "expected":
        raise RecrankerError(f"rank.rating_mode: unknown mode {mode!r} (expected|argmax)")
    z = lp - lp.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p @ vals


def pointwise_rows(instructions: Sequence[Instruction], logprobs: Sequence[np.ndarray],
                   values: Sequence[float], mode: str = "expected") -> list[dict]:
    """Rows from the rating-token log-probs: score = expected (or argmax) rating."""
    if not instructions:
        return []
    lp = np.stack([np.asarray(x, dtype=np.float64) for x in logprobs])
    scores = expected_ratings(lp, values, mode)
    z = lp - lp.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return [
        {"id": ins.id, "user_id": ins.user_id, "candidates": list(ins.candidates),
         "scores": [float(sc)] * len(ins.candidates), "rating_probs": [round(float(x), 6) for x in pr]}
        for ins, sc, pr in zip(instructions, scores, probs)
    ]


def run_pointwise(backend, instructions: Sequence[Instruction], answers: Sequence[str],
                  values: Sequence[float], mode: str = "expected") -> list[dict]:
    """Expected rating of each pointwise instruction's single candidate.

    ``answers``: the answer strings the prompt asks for (e.g. "1".."5"); ``values``: the rating
    each answer means on the dataset's scale (see ``recranker.prompts.text.RatingScale``).
    """
    if len(answers) != len(values):
        raise RecrankerError(f"{len(answers)} rating answers but {len(values)} values")
    lp = backend.label_logprobs(_prompts(instructions), list(answers))
    return pointwise_rows(instructions, list(lp), values, mode)


# -- pairwise ---------------------------------------------------------------------------------

YES_NO = ("Yes", "No")


def pairwise_rows(instructions: Sequence[Instruction], logprobs: Sequence[np.ndarray]) -> list[dict]:
    """Rows from [log P(Yes), log P(No)]: scores = [P(A preferred), P(B preferred)] for the
    candidates [A, B] as shown, P(Yes) restricted to {Yes, No}."""
    rows = []
    for ins, (a, b) in zip(instructions, logprobs):
        m = max(a, b)
        p_yes = float(np.exp(a - m) / (np.exp(a - m) + np.exp(b - m))) if np.isfinite(m) else 0.5
        rows.append({"id": ins.id, "user_id": ins.user_id, "candidates": list(ins.candidates),
                     "scores": [p_yes, 1.0 - p_yes]})
    return rows


def run_pairwise(backend, instructions: Sequence[Instruction], answers: Sequence[str] = YES_NO) -> list[dict]:
    """"Would the user prefer A over B?" for each instruction. Both orders of a pair are
    separate instructions; :func:`pair_wins` combines them."""
    return pairwise_rows(instructions, list(backend.label_logprobs(_prompts(instructions), list(answers))))


def pair_wins(rows: Iterable[Mapping[str, Any]], per_comparison: bool = False, soft: bool = False
              ) -> tuple[dict[int, dict[int, float]], dict[str, int]]:
    """Pairwise predictions → (user → item → wins, consistency counts).

    Each instruction names a winner (the candidate with the higher score; an exact tie is half a
    win each). Per unordered pair, the item's win *fraction* over that pair's instructions is
    added to its wins. With the usual two orders: agreeing orders give the preferred item 1 win;
    disagreeing orders share it, 0.5 each (our rule for RecRanker's C2 when the orders
    disagree). A pair is position-consistent when all its orders pick the same item.

    ``soft``: an instruction gives each candidate its probability share instead of a 0/1 win, so
    a pair's win fraction is the mean of P(A preferred) over its orders. A model with a position
    bias (e.g. P(Yes) ≈ .3 whatever the pair) then still ranks by how far each order moves that
    probability: with both orders the bias cancels, where hard votes would call every pair a draw.
    Consistency is always counted on the hard answers (what the model would say).

    ``per_comparison``: scale an item's wins by (the user's most comparisons per item) / (its own
    comparisons), i.e. judge it by the share of its comparisons it wins. With adjacent pairs the
    backbone's first and last items take part in one comparison and the others in two, so raw
    counts demote the top item even when every answer is a coin flip; scaled, a pairwise answer
    that carries no information (e.g. always "Yes") leaves the backbone order as it is. With all
    pairs every item has the same number of comparisons and nothing changes.
    """
    votes: dict[int, dict[frozenset, list[tuple[int, float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        (a, b), (sa, sb) = r["candidates"], r["scores"]
        a, b = int(a), int(b)
        hard_a = 1.0 if sa > sb else 0.0 if sa < sb else 0.5
        soft_a = sa / (sa + sb) if sa + sb > 0 else 0.5
        votes[int(r["user_id"])][frozenset((a, b))].append((a, soft_a if soft else hard_a, hard_a))
    wins: dict[int, dict[int, float]] = {}
    pairs = multi = consistent = 0
    for u, by_pair in votes.items():
        w: dict[int, float] = defaultdict(float)
        n: dict[int, int] = defaultdict(int)
        for pair, vs in by_pair.items():
            a, b = sorted(pair)
            frac_a = float(np.mean([wa if x == a else 1.0 - wa for x, wa, _ in vs]))
            w[a] += frac_a
            w[b] += 1.0 - frac_a
            n[a] += 1
            n[b] += 1
            pairs += 1
            if len(vs) > 1:
                multi += 1
                consistent += float(np.mean([h if x == a else 1.0 - h for x, _, h in vs])) in (0.0, 1.0)
        if per_comparison:
            most = max(n.values())
            w = {i: v * most / n[i] for i, v in w.items()}
        wins[u] = dict(w)
    return wins, {"pairs": pairs, "pairs_with_both_orders": multi, "consistent_pairs": consistent}



def listwise_verbalizer_rows(instructions: Sequence[Instruction], logprobs: Sequence[np.ndarray],
                             backbone_rank=None) -> list[dict]:
    """Candidates ordered by the probability of their letter label (A, B, ...) as the first
    token of the answer; ties keep the backbone order."""
    rows = []
    for ins, row_lp in zip(instructions, logprobs):
        row_lp = np.asarray(row_lp, dtype=np.float64)
        fb = _backbone_fallback(ins, backbone_rank)
        rank_in_fb = {idx: r for r, idx in enumerate(fb)}
        order = sorted(range(len(ins.candidates)), key=lambda i: (-row_lp[i], rank_in_fb[i]))
        z = row_lp - np.max(row_lp)
        pr = np.exp(z) / np.exp(z).sum()
        rows.append(_list_row(ins, order, label_probs=[round(float(x), 6) for x in pr]))
    return rows


def listwise_generated_rows(instructions: Sequence[Instruction], texts: Sequence[str], titles=None,
                            backbone_rank=None) -> tuple[list[dict], dict[str, Any]]:
    """Parse generated answers (:class:`ListwiseParser`, titles as shown in the prompt); parse
    failures are counted and completed in backbone order."""
    rows, failures, empty = [], 0, 0
    for ins, text in zip(instructions, texts):
        res = ListwiseParser(shown_titles(ins, titles)).parse(text, _backbone_fallback(ins, backbone_rank))
        failures += not res.complete
        empty += res.parsed == 0
        rows.append(_list_row(ins, res.order, output=text, parsed=res.parsed))
    n = max(len(instructions), 1)
    return rows, {"parse_failures": failures, "parse_failure_rate": failures / n, "unparsed_outputs": empty}


def run_tasks(
    backend,
    by_task: Mapping[str, Sequence[Instruction]],
    *,
    scale,
    rating_mode: str = "expected",
    listwise_mode: str = "verbalizer",
    sampling=None,
    titles: Mapping[int, str] | None = None,
    backbone_rank: Mapping[int, Mapping[int, int]] | None = None,
) -> dict[str, tuple[list[dict], dict[str, Any]]]:
    """Every task's (prediction rows, task metrics); ``scale`` is a ``RatingScale``.

    All answers read from token probabilities (pointwise ratings, pairwise Yes/No, the listwise
    verbalizer's letters) go to the backend in ONE call, so a backend that caches prefixes
    encodes each user's history once for all tasks. Listwise ``generate`` mode generates text.
    """
    for task in by_task:
        if task not in TASKS:
            raise RecrankerError(f"rank.tasks: unknown task {task!r}")
    if listwise_mode not in ("verbalizer", "generate"):
        raise RecrankerError(f"rank.listwise_mode: unknown mode {listwise_mode!r} (verbalizer|generate)")
    answers, values = scale.answers(), scale.values()
    labels_of = {"pointwise": lambda ins: answers, "pairwise": lambda ins: list(YES_NO),
                 "listwise": listwise_labels}
    scored = [t for t in by_task if t != "listwise" or listwise_mode == "verbalizer"]
    jobs = [(t, ins) for t in scored for ins in by_task[t]]
    lps = backend.label_logprobs_multi(_prompts([ins for _, ins in jobs]),
                                       [labels_of[t](ins) for t, ins in jobs]) if jobs else []
    per_task: dict[str, list[np.ndarray]] = defaultdict(list)
    for (t, _), lp in zip(jobs, lps):
        per_task[t].append(lp)
    out: dict[str, tuple[list[dict], dict[str, Any]]] = {}
    for task, instructions in by_task.items():
        instructions = list(instructions)
        if task == "pointwise":
            rows = pointwise_rows(instructions, per_task[task], values, rating_mode)
            out[task] = rows, {"mean_score": float(np.mean([r["scores"][0] for r in rows])) if rows else None}
        elif task == "pairwise":
            rows = pairwise_rows(instructions, per_task[task])
            _, counts = pair_wins(rows)
            both = counts["pairs_with_both_orders"]
            out[task] = rows, {**counts, "consistency": counts["consistent_pairs"] / both if both else None}
        elif listwise_mode == "verbalizer":
            out[task] = listwise_verbalizer_rows(instructions, per_task[task], backbone_rank), {"mode": listwise_mode}
        else:
            from recranker.llm.backends.base import Sampling

            texts = backend.generate(_prompts(instructions), sampling or Sampling())
            rows, m = listwise_generated_rows(instructions, texts, titles, backbone_rank)
            out[task] = rows, {"mode": listwise_mode, **m}
    return out
