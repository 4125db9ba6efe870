"""k-core, duplicates, id encoding, leave-one-out and the prepare() pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recranker.data import (
    RawData,
    drop_duplicates,
    encode_ids,
    is_kcore,
    kcore,
    leave_one_out,
    load_prepared,
    prepare,
    write_prepared,
)
from recranker.data.raw import ratings_frame
from recranker.errors import RecrankerError


def _frame(pairs, ts=None, rating=None):
    users, items = zip(*pairs)
    n = len(pairs)
    return ratings_frame(
        users,
        items,
        rating if rating is not None else [4.0] * n,
        ts if ts is not None else list(range(n)),
    )


def _kcore_one_at_a_time(df: pd.DataFrame, user_min: int, item_min: int, seed: int) -> set:
    """Independent reference: delete one violating user/item at a time, in random order."""
    rng = np.random.default_rng(seed)
    rows = set(range(len(df)))
    while True:
        sub = df.iloc[sorted(rows)]
        uc, ic = sub["user"].value_counts(), sub["item"].value_counts()
        bad = [("user", u) for u in uc.index[uc < user_min]] + [
            ("item", i) for i in ic.index[ic < item_min]
        ]
        if not bad:
            return rows
        col, val = bad[rng.integers(len(bad))]
        rows -= set(np.flatnonzero((df[col] == val).to_numpy()))


def test_kcore_needs_several_rounds():
    # u1 has 2 items; removing item c (1 rating) drops u2 to 1 rating, which then drops item b...
    df = _frame(
        [
            ("u1", "a"),
            ("u1", "b"),
            ("u2", "b"),
            ("u2", "c"),
            ("u3", "a"),
            ("u3", "d"),
            ("u4", "a"),
            ("u4", "d"),
        ]
    )
    core = kcore(df, 2, 2)
    assert is_kcore(core, 2, 2)
    assert sorted(map(tuple, core[["user", "item"]].to_numpy())) == [
        ("u3", "a"),
        ("u3", "d"),
        ("u4", "a"),
        ("u4", "d"),
    ]
    assert not is_kcore(df, 2, 2)
    assert kcore(df, 0, 0).equals(df)


@pytest.mark.parametrize("seed", range(5))
def test_kcore_is_the_unique_maximal_core(seed):
    rng = np.random.default_rng(seed)
    n = 300
    users = rng.zipf(1.6, n) % 40
    items = rng.zipf(1.4, n) % 60
    df = drop_duplicates(_frame(list(zip(users.astype(str), items.astype(str)))))
    core = kcore(df, 3, 2)
    assert is_kcore(core, 3, 2)
    assert set(np.flatnonzero(df.index.isin(core.index))) == _kcore_one_at_a_time(df, 3, 2, seed)


def test_drop_duplicates_keeps_latest_in_source_order():
    df = _frame(
        [("u", "a"), ("u", "b"), ("u", "a"), ("v", "a")],
        ts=[5, 1, 3, 9],
        rating=[1.0, 2.0, 3.0, 4.0],
    )
    out = drop_duplicates(df)
    assert out["rating"].tolist() == [1.0, 2.0, 4.0]  # (u, a) at ts 5 is the latest
    tie = drop_duplicates(_frame([("u", "a"), ("u", "a")], ts=[7, 7], rating=[1.0, 2.0]))
    assert tie["rating"].tolist() == [2.0]  # equal time: the later line wins


def test_encode_ids_orders_by_original_id():
    df = _frame([("10", "b"), ("2", "a"), ("2", "c"), ("33", "a")])
    enc, id_map = encode_ids(df)
    users = id_map[id_map["kind"] == "user"]
    assert users["original"].tolist() == ["2", "10", "33"]  # numeric, not "10" < "2"
    assert enc["user_id"].tolist() == [1, 0, 0, 2] and enc["item_id"].tolist() == [1, 0, 2, 0]
    _, m2 = encode_ids(_frame([("b7", "x"), ("a9", "x"), ("10", "x")]))
    assert m2.loc[m2["kind"] == "user", "original"].tolist() == ["10", "a9", "b7"]


def test_leave_one_out_by_time_with_stable_ties():
    df = pd.DataFrame(
        {
            "user_id": [1, 0, 0, 0, 1, 0, 1],
            "item_id": [9, 1, 2, 3, 8, 4, 7],
            "rating": 4.0,
            "timestamp": [5, 10, 30, 30, 5, 20, 1],
        }
    )
    out = leave_one_out(df)
    u0 = out[out["user_id"] == 0]
    assert u0["item_id"].tolist() == [1, 4, 2, 3]  # 2 and 3 tie at 30: file order kept
    assert u0["split"].tolist() == ["train", "train", "valid", "test"]
    u1 = out[out["user_id"] == 1]
    assert u1["item_id"].tolist() == [7, 9, 8] and u1["split"].tolist() == [
        "train",
        "valid",
        "test",
    ]
    with pytest.raises(RecrankerError, match="user 5 has fewer than 3"):
        leave_one_out(pd.DataFrame({"user_id": [5, 5], "item_id": [1, 2], "timestamp": [1, 2]}))


def _raw(pairs, ts=None):
    df = _frame(pairs, ts)
    items = pd.DataFrame({"item": sorted(set(df["item"])), "title": "t"})
    return RawData("ml-100k", df, items, (1.0, 5.0))


def test_prepare_min_interactions_and_kcore_reach_a_joint_fixed_point():
    # Plain 2-core keeps everything; dropping C (2 ratings < min_interactions 3) leaves item w
    # with 1 rating, and dropping w leaves D with 2: a single pass would stop too early.
    pairs = [
        ("A", "x"),
        ("A", "y"),
        ("A", "z"),
        ("B", "x"),
        ("B", "y"),
        ("B", "z"),
        ("C", "x"),
        ("C", "w"),
        ("D", "w"),
        ("D", "x"),
        ("D", "y"),
    ]
    assert is_kcore(_frame(pairs), 2, 2)
    p = prepare(_raw(pairs), kcore_k=2, min_interactions=3)
    users = p.id_map.loc[p.id_map["kind"] == "user", "original"].tolist()
    items = p.id_map.loc[p.id_map["kind"] == "item", "original"].tolist()
    assert users == ["A", "B"] and items == ["x", "y", "z"]
    assert is_kcore(p.interactions.rename(columns={"user_id": "user", "item_id": "item"}), 3, 2)
    assert p.stats["filtering"]["core_dropped"] == 5
    without_core = prepare(_raw(pairs), kcore_k=0, min_interactions=3)
    assert without_core.id_map.loc[without_core.id_map["kind"] == "user", "original"].tolist() == [
        "A",
        "B",
        "D",
    ]
    with pytest.raises(RecrankerError, match="no interactions left"):
        prepare(_raw(pairs), kcore_k=4)


def test_prepare_require_title_and_roundtrip(tmp_path):
    pairs = [("u", "a"), ("u", "b"), ("u", "c"), ("u", "d"), ("v", "a"), ("v", "b"), ("v", "d")]
    raw = _raw(pairs)
    raw.items.loc[raw.items["item"] == "c", "title"] = ""
    p = prepare(raw, require_title=True)
    assert p.stats["filtering"]["untitled_dropped"] == 1 and p.stats["items"] == 3
    out = write_prepared(p, tmp_path / "processed")
    assert sorted(f.name for f in out.iterdir()) == sorted(
        ["interactions.parquet", "id_map.parquet", "items.parquet", "stats.json"]
    )
    back = load_prepared(out)
    assert back.interactions.equals(p.interactions) and back.stats == p.stats
    assert list(tmp_path.iterdir()) == [out]  # no temporary leftovers


def test_test_user_subset_is_seeded_sorted_and_all_by_default():
    from recranker.data import test_user_subset

    users = np.arange(100)[::-1].repeat(2)  # unsorted, with duplicates
    assert np.array_equal(test_user_subset(users, 0, 1), np.arange(100))
    assert np.array_equal(test_user_subset(users, 500, 1), np.arange(100))
    a, b = test_user_subset(users, 30, 1), test_user_subset(users, 30, 1)
    assert np.array_equal(a, b) and len(a) == 30 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, test_user_subset(users, 30, 2))
