"""Hybrid formula, listwise parser (fuzzed), pairwise aggregation and evaluation over all users."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recranker.errors import DataFormatError
from recranker.ranking.config import HybridWeights
from recranker.ranking.hybrid import evaluate_rankings, rerank, utilities
from recranker.ranking.instructions import parse_instruction
from recranker.ranking.listwise import ListwiseParser
from recranker.ranking.tasks import pair_wins

TITLES = ["Toy Story (1995)", "Godfather, The (1972)", "Heat (1995)", "A Bug's Life (1998)",
          "Se7en (1995)", "Fargo (1996)", "It's a Wonderful Life (1946)", "Babe (1995)",
          "Clerks (1994)", "Alien (1979)"]


# -- hybrid -----------------------------------------------------------------------------------


def test_hybrid_hand_computed():
    c = [10, 20, 30]  # backbone order: m = 1, 2, 3
    point = {10: 3.0, 20: 4.0, 30: 3.5}
    pair = {20: 1.0, 30: 2.0}  # 10 won nothing
    lpos = {10: 1, 20: 3, 30: 2}
    u = utilities(c, point=point, pair=pair, list_pos=lpos)
    # U_point = s − 0.05 m; U_pair = 0.5 wins; U_list = −0.025 m'; U = mean of the three.
    want = [(3.0 - 0.05 + 0 - 0.025) / 3, (4.0 - 0.10 + 0.5 - 0.075) / 3, (3.5 - 0.15 + 1.0 - 0.05) / 3]
    np.testing.assert_allclose(u, want, atol=1e-12)
    assert rerank(c, u) == [20, 30, 10]
    # Single tasks.
    assert rerank(c, utilities(c, point=point, weights=(1, 0, 0))) == [20, 30, 10]
    assert rerank(c, utilities(c, pair=pair, weights=(0, 1, 0))) == [30, 20, 10]
    assert rerank(c, utilities(c, list_pos=lpos, weights=(0, 0, 1))) == [10, 30, 20]


def test_hybrid_custom_constants_and_backbone_prior():
    w = HybridWeights(c1=0.5, c2=1.0, c3=0.0, a1=1.0, a2=0.0, a3=0.0)
    # Equal LLM ratings: the −m·C1 term keeps the backbone order.
    assert rerank([7, 8, 9], utilities([7, 8, 9], point={7: 2, 8: 2, 9: 2}, w=w)) == [7, 8, 9]
    # A rating gap larger than C1 per rank overturns it.
    assert rerank([7, 8, 9], utilities([7, 8, 9], point={7: 2, 8: 2, 9: 3.1}, w=w))[0] == 9


def test_ties_keep_backbone_order():
    assert rerank([5, 3, 9, 1], [0.0, 0.0, 0.0, 0.0]) == [5, 3, 9, 1]
    assert rerank([5, 3, 9, 1], [1.0, 2.0, 2.0, 1.0]) == [3, 9, 5, 1]


# -- pairwise ---------------------------------------------------------------------------------


def _pair(u, a, b, p_a):
    return {"user_id": u, "candidates": [a, b], "scores": [p_a, 1 - p_a]}


def test_pair_wins_both_orders_agree_and_disagree():
    rows = [
        _pair(0, 1, 2, 0.8), _pair(0, 2, 1, 0.3),  # both orders prefer 1 → 1 gets a full win
        _pair(0, 2, 3, 0.9), _pair(0, 3, 2, 0.6),  # each order prefers its first item → 0.5 each
        _pair(1, 5, 6, 0.4),                        # one order only
    ]
    wins, counts = pair_wins(rows)
    assert wins[0] == {1: 1.0, 2: 0.5, 3: 0.5}
    assert wins[1] == {5: 0.0, 6: 1.0}
    assert counts == {"pairs": 3, "pairs_with_both_orders": 2, "consistent_pairs": 1}



def test_soft_pair_votes_cancel_a_position_bias_that_hard_votes_turn_into_draws():
    """A model that answers "No" to everything (P(Yes) < .5 in both orders) but less firmly when
    the better item comes first: hard votes call each pair a draw, soft votes keep its lean."""
    rows = [_pair(0, 1, 2, 0.35), _pair(0, 2, 1, 0.25),  # P(1 over 2) = (.35 + .75) / 2 = .55
            _pair(0, 2, 3, 0.30), _pair(0, 3, 2, 0.30)]  # no lean: .5 each
    hard, counts = pair_wins(rows)
    assert hard[0] == {1: 0.5, 2: 1.0, 3: 0.5}
    soft, soft_counts = pair_wins(rows, soft=True)
    assert soft[0] == pytest.approx({1: 0.55, 2: 0.45 + 0.5, 3: 0.5})
    assert soft_counts == counts == {"pairs": 2, "pairs_with_both_orders": 2, "consistent_pairs": 0}
    # one order only: the vote is that answer's probability
    assert pair_wins([_pair(1, 5, 6, 0.4)], soft=True)[0][1] == pytest.approx({5: 0.4, 6: 0.6})

# -- listwise parser --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, first",
    [
        ("C. Heat (1995)\nA. Toy Story (1995)", [2, 0]),
        ("1. Heat\n2. The Godfather (1972)\n3. toy story", [2, 1, 0]),
        ("Heat > Toy Story (1995) > Godfather, The (1972)", [2, 0, 1]),
        ("Sure! Here is my ranking:\n1. (E) Se7en\n2) [J] Alien", [4, 9]),
        ("A Bug's Life (1998)\nB: whatever", [3, 1]),
        ("fargo 1996\nFARGO (1996)\nBabe", [5, 7]),  # duplicates ignored, case-insensitive
        ("Godfather The 1972", [1]),
        ("Z. Nothing\nQ. Unknown title", []),  # labels out of range, unknown titles
    ],
)
def test_parser_examples(text, first):
    res = ListwiseParser(TITLES).parse(text)
    assert list(res.order[: len(first)]) == first and res.parsed == len(first)
    assert sorted(res.order) == list(range(len(TITLES)))


def test_parser_fallback_order_fills_missing():
    res = ListwiseParser(TITLES).parse("Heat", fallback=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert res.order == (2, 9, 8, 7, 6, 5, 4, 3, 1, 0) and not res.complete


# Pieces a model's answer is made of, plus arbitrary short Unicode text.
_POOL = TITLES + [t.upper() for t in TITLES] + [t[: len(t) // 2] for t in TITLES] + [
    f"{c}. " for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"] + [
    "\n", ", ", " > ", "; ", " | ", "1. ", "10) ", "- ", "* ", "(", ")", "[", "]", "\t", "…", "\u2028",
    "\r\n", "Sure! Here is the ranking:", "The Godfather", "Toy Story 2", "", "  ", "A", "Z."]
_CHARS = "aZ9 .,:;()[]\n\t-–—é漢🙂\u200b\u2028\x00"


def _decode(data: bytes) -> tuple[str, int, list[int]]:
    """One byte string → (answer text, candidate count, fallback order). A single draw per
    example keeps hypothesis' own overhead low enough for 10,000 examples in seconds; bytes
    below len(_POOL) pick answer pieces, the rest single (often exotic) characters."""
    n = 1 + (data[0] % len(TITLES)) if data else len(TITLES)
    fallback = np.random.default_rng(data[1] if len(data) > 1 else 0).permutation(n).tolist()
    out = []
    for b in data[2:]:
        out.append(_POOL[b] if b < len(_POOL) else _CHARS[b % len(_CHARS)])
    return "".join(out), n, fallback


@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
@given(data=st.binary(max_size=40))
def test_parser_fuzz_never_raises_and_returns_a_permutation(data):
    text, n, fallback = _decode(data)
    res = _parser(n).parse(text, fallback)
    assert sorted(res.order) == list(range(n))
    assert 0 <= res.parsed <= n
    assert list(res.order[res.parsed:]) == [i for i in fallback if i not in res.order[: res.parsed]]


_PARSERS: dict[int, ListwiseParser] = {}


def _parser(n: int) -> ListwiseParser:
    """Parsers are reusable (memoised title matches); build one per candidate count."""
    if n not in _PARSERS:
        _PARSERS[n] = ListwiseParser(TITLES[:n])
    return _PARSERS[n]


def test_parser_is_fast_on_long_garbage():
    text = ("Lorem ipsum, dolor > sit; amet | " * 40 + "\n") * 500
    t = time.perf_counter()
    res = ListwiseParser(TITLES).parse(text)
    assert time.perf_counter() - t < 2.0 and sorted(res.order) == list(range(10))


# -- evaluation -------------------------------------------------------------------------------


def test_evaluation_counts_every_user_and_missing_items_as_misses():
    cands = {0: [1, 2, 3], 1: [4, 5, 6], 2: [7, 8, 9]}
    targets = {0: 3, 1: 99, 2: 7, 3: 1}  # user 1: target not in candidates; user 3: no candidates
    preds = {"pointwise": [
        {"user_id": 0, "candidates": [1], "scores": [1.0]},
        {"user_id": 0, "candidates": [2], "scores": [2.0]},
        {"user_id": 0, "candidates": [3], "scores": [5.0]},
        {"user_id": 1, "candidates": [99], "scores": [5.0]},  # a stray item is never ranked in
        {"user_id": 2, "candidates": [7], "scores": [1.0]},
        {"user_id": 2, "candidates": [8], "scores": [3.0]},
        {"user_id": 2, "candidates": [9], "scores": [3.0]},
    ]}
    report, rankings = evaluate_rankings(cands, targets, preds, ks=(1, 3))
    assert report["counts"]["test_users"] == 4
    assert report["candidate_recall@3"] == pytest.approx(2 / 4)
    assert report["backbone"]["HR@1"] == pytest.approx(1 / 4)  # user 2 only
    assert rankings["pointwise"][0] == [3, 2, 1]
    assert rankings["pointwise"][2] == [8, 9, 7]  # 8 and 9 tie on s; −m·C1 keeps 8 first
    assert report["pointwise"]["HR@1"] == pytest.approx(1 / 4)  # user 0 now, user 2 lost
    assert report["pointwise"]["HR@3"] == pytest.approx(2 / 4)  # never above candidate recall
    assert report["hybrid"]["HR@1"] == report["pointwise"]["HR@1"]  # only one task present
    nd = 1 / np.log2(4)  # user 0 at rank 1, user 2 at rank 3
    assert report["pointwise"]["NDCG@3"] == pytest.approx((1 + nd) / 4)
    assert report["pointwise"]["improvement_%"]["HR@1"] == pytest.approx(0.0)
    report2, _ = evaluate_rankings(cands, targets, {"pointwise": preds["pointwise"][:3]}, ks=(1, 3))
    base, point = report2["backbone"]["NDCG@3"], report2["pointwise"]["NDCG@3"]
    assert point != base  # user 0 moves up, nobody moves down
    assert report2["pointwise"]["improvement_%"]["NDCG@3"] == pytest.approx(100 * (point - base) / base)


def test_parse_instruction_errors_name_file_and_line():
    row = {"id": "a", "task": "pairwise", "user_id": 1, "candidates": [1, 2, 3],
           "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(DataFormatError, match=r"^t\.jsonl:7: a pairwise instruction needs 2"):
        parse_instruction(row, "t.jsonl:7")
    with pytest.raises(DataFormatError, match="missing key 'messages'"):
        parse_instruction({"id": "a", "task": "pointwise", "user_id": 1, "candidates": [1]}, "t.jsonl:1")
