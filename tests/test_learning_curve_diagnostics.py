"""benchmarks/learning_curve.py's read-outs of what the tuned model learned, on hand-computed cases."""

from __future__ import annotations

import pytest

from recranker.ranking.selection import task_arrays


@pytest.fixture(scope="module")
def bench(benchmark_script):
    return benchmark_script("learning_curve")


def test_heldout_auc_counts_the_candidates_below_the_held_out_item(bench):
    candidates = {0: [10, 11, 12, 13], 1: [20, 21, 22, 23], 2: [30, 31, 32, 33]}
    targets = {0: 12, 1: 20, 2: 99}  # user 2's item is not a candidate: it does not count
    point = [{"user_id": u, "candidates": [i], "scores": [s]} for u, row in
             ((0, {10: 1.0, 11: 3.0, 12: 3.0, 13: 5.0}), (1, {20: 4.0, 21: 1.0, 22: 2.0, 23: 3.0}),
              (2, {30: 1.0, 31: 1.0, 32: 1.0, 33: 1.0})) for i, s in row.items()]
    auc = bench.heldout_auc(task_arrays(candidates, targets, {"pointwise": point}))
    # user 0: the item at position 3 of 4 is above 2 of the 3 others (one tie: 1 + .5) → 1.5/3;
    # the backbone order puts 2 of the 3 others below it → 1/3. User 1: first everywhere → 1.
    assert auc["pointwise"] == pytest.approx((1.5 / 3 + 1.0) / 2)
    assert auc["backbone"] == pytest.approx((1 / 3 + 1.0) / 2)
    assert set(auc) == {"backbone", "pointwise"}  # tasks without predictions are not reported


def test_pairwise_soft_votes_cancel_a_rote_answer(bench):
    """A model that answers "No" to every pair prefers the second movie in both orders: soft votes
    give every candidate the same wins, so its held-out AUC is exactly .5 and its Yes share 0."""
    candidates, targets = {0: [1, 2, 3]}, {0: 2}
    rows = [{"user_id": 0, "candidates": [a, b], "scores": [0.3, 0.7]}
            for a, b in ((1, 2), (2, 1), (2, 3), (3, 2), (1, 3), (3, 1))]
    arr = task_arrays(candidates, targets, {"pairwise": rows})
    assert bench.heldout_auc(arr)["pairwise"] == pytest.approx(0.5)
    assert bench.yes_share(rows) == 0.0 and bench.yes_share([]) is None
    follows = [{**r, "scores": [0.9, 0.1] if r["candidates"][0] == 2 else [0.1, 0.9]} for r in rows]
    assert bench.heldout_auc(task_arrays(candidates, targets, {"pairwise": follows}))["pairwise"] == 1.0
    assert bench.yes_share(follows) == pytest.approx(1 / 3)
    assert bench.heldout_auc(arr)["backbone"] == pytest.approx(0.5)  # position 2 of 3: one above, one below
