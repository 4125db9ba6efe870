import math

import numpy as np
import pytest

from recranker import metrics


def test_hit_ratio_and_ndcg_by_hand():
    ranks = [1, 2, 4, 0]  # 0 = ground truth absent from the list: a miss, still counted
    assert metrics.hit_ratio(ranks, 3) == pytest.approx(2 / 4)
    assert metrics.hit_ratio(ranks, 5) == pytest.approx(3 / 4)
    expected = (1 / math.log2(2) + 1 / math.log2(3)) / 4
    assert metrics.ndcg(ranks, 3) == pytest.approx(expected)
    expected5 = (1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4
    assert metrics.ndcg(ranks, 5) == pytest.approx(expected5)


def test_rank_of_handles_absent_targets():
    ranked = np.array([[5, 3, 9], [1, 2, 3], [7, 8, -1]])
    assert metrics.rank_of(np.array([3, 4, 8]), ranked).tolist() == [2, 0, 2]


def test_report_keys():
    rep = metrics.ranking_report([1, 0], ks=(3, 5))
    assert rep == {"HR@3": 0.5, "NDCG@3": 0.5, "HR@5": 0.5, "NDCG@5": 0.5}


def test_auc_matches_definition():
    assert metrics.auc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.5]) == pytest.approx(0.75)
