"""Ranking tasks over an LLM backend, and RecRanker's hybrid ranking.

Light module (no torch): the backend object does the model work. Three steps:

1. ``parse_instructions``: test instructions (docs/CONTRACTS.md) → :class:`Instruction`.
2. ``run_tasks`` (all tasks, one backend call) or ``run_pointwise`` / ``run_pairwise``: one
   prediction row per instruction (``id``, ``user_id``, ``candidates``, ``scores`` — higher =
   preferred — plus extras); listwise via its letter verbalizer or generation + parser.
3. ``utilities`` / ``rerank``: the paper's hybrid formula over a user's k' backbone candidates:
   U_point = s − m·C1 (s the LLM's expected rating, m the backbone rank 1..k'),
   U_pair = C2 for the preferred item of each compared pair,
   U_list = −m'·C3 (m' the LLM's 1-based listwise position),
   U = a1·U_point + a2·U_pair + a3·U_list; ties keep the backbone order.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recranker.errors import DataFormatError, RecrankerError

TASKS = ("pointwise", "pairwise", "listwise")


@dataclass(frozen=True)
class Instruction:
    id: str
    task: str
    user_id: int
    messages: tuple[dict, ...]
    candidates: tuple[int, ...]
    meta: dict = field(default_factory=dict, hash=False, compare=False)
    label: Any = None


def parse_instruction(row: Mapping[str, Any], where: str) -> Instruction:
    """Validate one test-instruction record; ``where`` ("file:line") names it in errors."""
    path, _, line = where.rpartition(":")
    lineno = int(line) if line.isdigit() else None
    path = path if lineno is not None else where

    def bad(problem: str) -> DataFormatError:
        return DataFormatError(path, lineno, problem)

    for key in ("id", "task", "user_id", "messages", "candidates"):
        if key not in row:
            raise bad(f"missing key '{key}'")
    if row["task"] not in TASKS:
        raise bad(f"unknown task {row['task']!r}")
    msgs = row["messages"]
    if not isinstance(msgs, list) or not msgs or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in msgs
    ):
        raise bad("messages must be a non-empty list of {role, content}")
    cands = row["candidates"]
    if not isinstance(cands, list) or not cands:
        raise bad("candidates must be a non-empty list of item ids")
    try:
        cands_t = tuple(int(c) for c in cands)
        uid = int(row["user_id"])
    except (TypeError, ValueError):
        raise bad("user_id and candidates must be integers") from None
    if len(set(cands_t)) != len(cands_t):
        raise bad("duplicate candidates")
    if row["task"] == "pairwise" and len(cands_t) != 2:
        raise bad(f"a pairwise instruction needs 2 candidates, got {len(cands_t)}")
    return Instruction(
        id=str(row["id"]),
        task=row["task"],
        user_id=uid,
        messages=tuple({"role": m["role"], "content": m["content"]} for m in msgs),
        candidates=cands_t,
        meta=dict(row.get("meta") or {}),
        label=row.get("label"),
    )


def _prompts(instructions: Sequence[Instruction]):
    from recranker.llm.backends.base import Prompt

    return [Prompt.from_messages(ins.messages, group=ins.user_id) for ins in instructions]


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


def pair_wins(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[int, dict[int, float]], dict[str, int]]:
    """Pairwise predictions → (user → item → wins, consistency counts).

    Each instruction names a winner (the candidate with the higher score; an exact tie is half a
    win each). Per unordered pair, the item's win *fraction* over that pair's instructions is
    added to its wins. With the usual two orders: agreeing orders give the preferred item 1 win;
    disagreeing orders share it, 0.5 each (our rule for RecRanker's C2 when the orders
    disagree). A pair is position-consistent when all its orders pick the same item.
    """
    votes: dict[int, dict[frozenset, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        (a, b), (sa, sb) = r["candidates"], r["scores"]
        a, b = int(a), int(b)
        win_a = 1.0 if sa > sb else 0.0 if sa < sb else 0.5
        votes[int(r["user_id"])][frozenset((a, b))].append((a, win_a))
    wins: dict[int, dict[int, float]] = {}
    pairs = multi = consistent = 0
    for u, by_pair in votes.items():
        w: dict[int, float] = defaultdict(float)
        for pair, vs in by_pair.items():
            a, b = sorted(pair)
            frac_a = float(np.mean([wa if x == a else 1.0 - wa for x, wa in vs]))
            w[a] += frac_a
            w[b] += 1.0 - frac_a
            pairs += 1
            if len(vs) > 1:
                multi += 1
                consistent += frac_a in (0.0, 1.0)
        wins[u] = dict(w)
    return wins, {"pairs": pairs, "pairs_with_both_orders": multi, "consistent_pairs": consistent}


# -- listwise ---------------------------------------------------------------------------------

_NUMBERING = re.compile(r"^\s*(?:(?:\d{1,3}|[ivx]{1,4})\s*[.):\]-]\s*|[-*\u2022>#]+\s*)+", re.IGNORECASE)
_LABEL = re.compile(r"^[\[(]?([A-Z])(?:[\].):\-]\s*|\s*$)")
_STRONG = re.compile(r"\s*(?:;|>|\||\t)\s*")
_YEAR = re.compile(r"\s*\((?:\d{4}|[^()]*)\)\s*$")
_ARTICLE = re.compile(r"^(.*), (the|a|an|les|la|le|il|der|die|das|el)$", re.IGNORECASE)
_MAX_LINES = 200
_MAX_LINE_CHARS = 300


def _norm(text: str) -> str:
    t = unicodedata.normalize("NFKD", text).casefold()
    t = "".join(c if c.isalnum() else " " for c in t if not unicodedata.combining(c))
    return " ".join(t.split())


def _aliases(title: str) -> set[str]:
    """Normalised forms a model may write a title in: as is, without the trailing "(1995)", and
    with a trailing article moved to the front ("Godfather, The" → "The Godfather")."""
    forms = {title}
    bare = _YEAR.sub("", title).strip()
    forms.add(bare)
    for t in (title, bare):
        m = _ARTICLE.match(_YEAR.sub("", t).strip())
        if m:
            forms.add(f"{m.group(2)} {m.group(1)}")
    return {f for f in (_norm(x) for x in forms) if f}


@dataclass(frozen=True)
class ParsedList:
    """order: indices into the shown candidates (a full permutation); parsed: how many of them
    the text named (the rest were appended in fallback order); complete: parsed == n."""

    order: tuple[int, ...]
    parsed: int

    @property
    def complete(self) -> bool:
        return self.parsed == len(self.order)


class ListwiseParser:
    """Reads a listwise answer ("C. Heat (1995)" lines, best first) back into candidate indices.

    Never raises and always returns a permutation. Per line: numbering/bullets are stripped; a
    leading letter label (A., (B), [C], D:) within range wins; otherwise the text is matched to a
    title after normalisation (case, accents, punctuation), then fuzzily (difflib, ratio ≥
    ``cutoff``); a line naming nothing is split on ``; > | ,`` and the pieces are tried. Repeats,
    unknown labels/titles are ignored; candidates never named follow in ``fallback`` order.
    """

    def __init__(self, titles: Sequence[str], cutoff: float = 0.75):
        self.n = len(titles)
        self.cutoff = cutoff
        self.aliases: list[tuple[str, int]] = []  # (normalised form, candidate index)
        for i, t in enumerate(titles):
            for a in _aliases(str(t)):
                self.aliases.append((a, i))
        self.exact: dict[str, int] = {}
        for a, i in self.aliases:
            self.exact.setdefault(a, i)
        # One matcher per alias with the alias as the (indexed) second sequence: indexing is
        # the expensive part of difflib and is done once, not once per line.
        self._matchers = [(difflib.SequenceMatcher(None, "", a, autojunk=False), i) for a, i in self.aliases]
        self._memo: dict[str, int | None] = {}

    def _title(self, text: str) -> int | None:
        t = _norm(text[:_MAX_LINE_CHARS])
        if not t:
            return None
        if t in self.exact:
            return self.exact[t]
        if t in self._memo:
            return self._memo[t]
        best, best_r = None, self.cutoff
        for sm, i in self._matchers:
            sm.set_seq1(t)
            if sm.real_quick_ratio() < best_r or sm.quick_ratio() < best_r:
                continue
            r = sm.ratio()
            if r > best_r or (r == best_r and best is None):
                best, best_r = i, r
        if len(self._memo) < 10_000:
            self._memo[t] = best
        return best

    def _line(self, line: str, depth: int = 0) -> list[int]:
        body = _NUMBERING.sub("", line, count=1).strip()
        if not body:
            return []
        m = _LABEL.match(body)
        if m and ord(m.group(1)) - 65 < self.n:
            return [ord(m.group(1)) - 65]
        hit = self._title(body)
        whole = [] if hit is None else [hit]
        if depth >= 2:
            return whole
        # One line naming several items: strong separators first, commas (which occur inside
        # titles such as "Godfather, The") only if there were none. The split reading wins
        # when it names at least two different candidates.
        pieces = _STRONG.split(body[:_MAX_LINE_CHARS])
        if len(pieces) == 1:
            pieces = body[:_MAX_LINE_CHARS].split(",")
        if len(pieces) == 1:
            return whole
        split = [i for piece in pieces for i in self._line(piece, depth + 1)]
        return split if len(set(split)) >= 2 or not whole else whole

    def parse(self, text: str, fallback: Sequence[int] | None = None) -> ParsedList:
        seen: list[int] = []
        lines = str(text).splitlines()[:_MAX_LINES]
        for line in lines:
            for i in self._line(line):
                if i not in seen:
                    seen.append(i)
            if len(seen) == self.n:
                break
        parsed = len(seen)
        fb = list(fallback) if fallback is not None else list(range(self.n))
        if sorted(fb) != list(range(self.n)):
            fb = list(range(self.n))
        rest = [i for i in fb if i not in seen]
        return ParsedList(tuple(seen + rest), parsed)


def _backbone_fallback(ins: Instruction, backbone_rank: Mapping[int, Mapping[int, int]] | None) -> list[int]:
    """Shown indices sorted by backbone rank (``meta.ranks`` of the instruction, else
    ``backbone_rank``; unknown ranks last, in shown order)."""
    ranks = ins.meta.get("ranks")
    if not (isinstance(ranks, list) and len(ranks) == len(ins.candidates)):
        by_item = (backbone_rank or {}).get(ins.user_id, {})
        ranks = [by_item.get(c) for c in ins.candidates]
    big = 10**9
    return sorted(range(len(ins.candidates)),
                  key=lambda i: (ranks[i] if isinstance(ranks[i], (int, float)) else big, i))


_SHOWN = re.compile(r"^([A-Z])\. (.+)$")


def shown_titles(ins: Instruction, titles: Mapping[int, str] | None = None) -> list[str]:
    """The candidate titles as the prompt shows them ("A. <title>" lines of the last user
    turn), else from ``titles`` (item → title), else "Item <id>"."""
    text = next((m["content"] for m in reversed(ins.messages) if m["role"] == "user"), "")
    found: dict[int, str] = {}
    for line in text.splitlines():
        m = _SHOWN.match(line)
        if m and ord(m.group(1)) - 65 < len(ins.candidates):
            found[ord(m.group(1)) - 65] = m.group(2).strip()
    if len(found) == len(ins.candidates):
        return [found[i] for i in range(len(ins.candidates))]
    return [(titles or {}).get(c, f"Item {c}") for c in ins.candidates]


def _list_row(ins: Instruction, order: Sequence[int], **extra) -> dict:
    """Scores = −(1-based LLM position), so higher = preferred and means over permutations are
    −m' averaged."""
    pos = {idx: k + 1 for k, idx in enumerate(order)}
    return {"id": ins.id, "user_id": ins.user_id, "candidates": list(ins.candidates),
            "scores": [-float(pos[i]) for i in range(len(ins.candidates))], **extra}


def listwise_labels(ins: Instruction) -> list[str]:
    from recranker.prompts.text import label

    return [label(i) for i in range(len(ins.candidates))]


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


# -- aggregation of predictions per user ------------------------------------------------------


def mean_scores_by_user(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[int, float]]:
    """user → item → mean score over every prediction row naming that item (position shifts,
    repeated instructions)."""
    acc: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for item, s in zip(r["candidates"], r["scores"]):
            acc[int(r["user_id"])][int(item)].append(float(s))
    return {u: {i: float(np.mean(v)) for i, v in d.items()} for u, d in acc.items()}


# -- hybrid ranking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HybridWeights:
    """Defaults: the RecRanker paper (C1 = 0.05, C2 = 0.5, C3 = 0.025, a1 = a2 = a3 = 1/3)."""

    c1: float = 0.05
    c2: float = 0.5
    c3: float = 0.025
    a1: float = 1 / 3
    a2: float = 1 / 3
    a3: float = 1 / 3


def utilities(
    candidates: Sequence[int],
    *,
    point: Mapping[int, float] | None = None,
    pair: Mapping[int, float] | None = None,
    list_pos: Mapping[int, int] | None = None,
    w: HybridWeights = HybridWeights(),
    weights: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """U per candidate (in backbone order). A missing task contributes nothing.

    point: item → LLM rating s; U_point = s − m·C1 with m = backbone rank (1-based). An item
        the pointwise task did not score gets s = 0 (it sinks; it cannot happen with complete
        predictions).
    pair: item → number of (possibly fractional) pair wins; U_pair = wins·C2.
    list_pos: item → 1-based listwise position m'; U_list = −m'·C3.
    weights: (a1, a2, a3) overriding ``w`` (e.g. (1, 0, 0) for a single task).
    """
    a1, a2, a3 = weights if weights is not None else (w.a1, w.a2, w.a3)
    m = np.arange(1, len(candidates) + 1, dtype=np.float64)
    u = np.zeros(len(candidates))
    if point is not None:
        s = np.array([float(point.get(c, 0.0)) for c in candidates])
        u += a1 * (s - m * w.c1)
    if pair is not None:
        u += a2 * w.c2 * np.array([float(pair.get(c, 0.0)) for c in candidates])
    if list_pos is not None:
        worst = len(candidates)
        u += a3 * -w.c3 * np.array([float(list_pos.get(c, worst)) for c in candidates])
    return u


def rerank(candidates: Sequence[int], u: Sequence[float]) -> list[int]:
    """Candidates by decreasing utility; equal utilities keep the backbone order (stable)."""
    u = np.asarray(u, dtype=np.float64)
    if len(u) != len(candidates):
        raise RecrankerError(f"{len(u)} utilities for {len(candidates)} candidates")
    order = np.argsort(-u, kind="stable")
    return [int(candidates[i]) for i in order]


# -- evaluation -------------------------------------------------------------------------------


def list_positions(rows: Iterable[Mapping[str, Any]]) -> dict[int, dict[int, float]]:
    """Listwise predictions (scores = −position) → user → item → mean 1-based position m'."""
    return {u: {i: -s for i, s in d.items()} for u, d in mean_scores_by_user(rows).items()}


def improvement(value: float, base: float) -> float | None:
    """Relative change in percent (None when the base is 0)."""
    return None if base == 0 else 100.0 * (value - base) / base


def evaluate_rankings(
    candidates: Mapping[int, Sequence[int]],
    targets: Mapping[int, int],
    predictions: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    w: HybridWeights = HybridWeights(),
    ks: Sequence[int] = (3, 5),
) -> tuple[dict[str, Any], dict[str, dict[int, list[int]]]]:
    """Metrics of the backbone order, each task's re-ranking and the hybrid, over ALL test users.

    candidates: user → backbone top-k' (best first); a user without candidates, or whose test
    item is not among them, is a miss for every method. predictions: task → prediction rows.
    Returns (report, rankings) with rankings[method][user] the re-ranked list.
    """
    from recranker.metrics import rank_of, ranking_report

    users = sorted(int(u) for u in targets)
    k_prime = max((len(c) for c in candidates.values()), default=0)
    point = mean_scores_by_user(predictions["pointwise"]) if "pointwise" in predictions else None
    pair, pair_counts = pair_wins(predictions["pairwise"]) if "pairwise" in predictions else (None, None)
    lpos = list_positions(predictions["listwise"]) if "listwise" in predictions else None
    tasks = {"pointwise": (point, (1.0, 0.0, 0.0)), "pairwise": (pair, (0.0, 1.0, 0.0)),
             "listwise": (lpos, (0.0, 0.0, 1.0))}
    present = [t for t, (d, _) in tasks.items() if d is not None]

    def ranked(u: int, weights, use) -> list[int]:
        c = list(candidates.get(u, []))
        got = {t: tasks[t][0].get(u) for t in use}
        if not c or all(v is None for v in got.values()):
            return c
        u_vals = utilities(c, point=got.get("pointwise"), pair=got.get("pairwise"),
                           list_pos=got.get("listwise"), w=w, weights=weights)
        return rerank(c, u_vals)

    methods: dict[str, tuple] = {"backbone": ((0.0, 0.0, 0.0), [])}
    for t in present:
        methods[t] = (tasks[t][1], [t])
    if present:
        methods["hybrid"] = ((w.a1, w.a2, w.a3), present)
    rankings: dict[str, dict[int, list[int]]] = {}
    report: dict[str, Any] = {}
    tgt = np.array([int(targets[u]) for u in users])
    width = max(k_prime, 1)
    for name, (weights, use) in methods.items():
        lists = {u: ranked(u, weights, use) if use else list(candidates.get(u, [])) for u in users}
        rankings[name] = lists
        mat = np.full((len(users), width), -1, dtype=np.int64)
        for row, u in enumerate(users):
            mat[row, : len(lists[u])] = lists[u][:width]
        report[name] = ranking_report(rank_of(tgt, mat), ks) if users else {}
    base = report["backbone"]
    for name in methods:
        if name != "backbone":
            report[name]["improvement_%"] = {k: improvement(v, v) for k, v in base.items()
                                              if k in report[name]}
    in_cands = sum(int(targets[u]) in set(candidates.get(u, [])) for u in users)
    counts: dict[str, Any] = {
        "test_users": len(users),
        "users_with_candidates": sum(bool(candidates.get(u)) for u in users),
        "k_prime": k_prime,
        "test_item_in_candidates": in_cands,
    }
    for t in present:
        counts[f"{t}_users"] = sum(u in tasks[t][0] for u in users)
        counts[f"{t}_predictions"] = len(predictions[t])
    report["counts"] = counts
    report[f"candidate_recall@{k_prime}"] = in_cands / len(users) if users else 0.0
    if pair_counts is not None:
        both = pair_counts["pairs_with_both_orders"]
        report["pairwise_consistency"] = pair_counts["consistent_pairs"] / both if both else None
        counts.update({f"pairwise_{k}": v for k, v in pair_counts.items()})
    if "listwise" in predictions:
        rows = predictions["listwise"]
        gen = [r for r in rows if "parsed" in r]
        if gen:
            fails = sum(r["parsed"] < len(r["candidates"]) for r in gen)
            report["listwise_parse_failure_rate"] = fails / len(gen)
            counts["listwise_parse_failures"] = fails
    return report, rankings
