"""RecBole atomic files (datasets.<name>.format: recbole): typed headers, ids as tokens, `.item`
titles, fractional timestamps ordering the split, one-line errors naming file, line and column."""

from __future__ import annotations

import pytest

from recranker.data import prepare, read_raw
from recranker.data.synthetic import write_recbole_atomic
from recranker.errors import DataFormatError

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def atomic(tmp_path, inter: str, item: str | None = None, name: str = "ds"):
    (tmp_path / f"{name}.inter").write_text(inter, encoding="utf-8")
    if item is not None:
        (tmp_path / f"{name}.item").write_text(item, encoding="utf-8")
    return tmp_path


def test_synthetic_atomic_files_prepare_like_the_native_formats(tmp_path):
    write_recbole_atomic(tmp_path, "toy", 30, 40, 600, seed=3)
    raw = read_raw("recbole", tmp_path)
    assert raw.ratings["user"].iloc[0].startswith("u") and raw.rating_scale == (1.0, 5.0)
    assert set(raw.items.columns) == {"item", "title", "release_year", "class"}
    prepared = prepare(raw, kcore_k=3)
    assert prepared.stats["format"] == "recbole" and prepared.stats["items_without_title"] == 0
    splits = prepared.interactions.groupby("user_id")["split"].agg(lambda s: list(s)[-2:])
    assert all(s == ["valid", "test"] for s in splits)
    assert write_recbole_atomic(tmp_path / "again", "toy", 30, 40, 600, seed=3)[0].read_bytes() == \
        (tmp_path / "toy.inter").read_bytes()


def test_fractional_timestamps_order_the_split_and_titles_come_from_item(tmp_path):
    rows = ["u1\ti3\t4\t100.9", "u1\ti1\t5\t100.2", "u1\ti2\t3\t100.5"]  # file order ≠ time order
    folder = atomic(tmp_path, HEADER + "\n".join(rows) + "\n",
                    "item_id:token\tmovie_title:token_seq\ni1\tAmélie\ni2\tLéon\ni3\t8½\n")
    p = prepare(read_raw("recbole", folder), min_interactions=3)
    by_split = dict(zip(p.interactions["split"], p.interactions["item_id"]))
    titles = dict(zip(p.items["item_id"], p.items["title"]))
    assert [titles[by_split[s]] for s in ("train", "valid", "test")] == ["Amélie", "Léon", "8½"]


def test_no_item_file_titles_are_the_ids(tmp_path):
    folder = atomic(tmp_path, HEADER + "a\tx\t5\t1\na\ty\t4\t2\na\tz\t1\t3\n")
    p = prepare(read_raw("recbole", folder))
    assert sorted(p.items["title"]) == ["x", "y", "z"]


@pytest.mark.parametrize(("inter", "message"), [
    ("user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\n", r"ds\.inter:1: no 'rating:float' column \(implicit"),
    ("user_id:token\titem_id:token\trating:float\nu\ti\t1\n", r"ds\.inter:1: no 'timestamp:float' column"),
    ("user:token\titem_id:token\trating:float\ttimestamp:float\nu\ti\t1\t1\n", r"no 'user_id:token' column"),
    ("user_id\titem_id:token\trating:float\ttimestamp:float\nu\ti\t1\t1\n", r"ds\.inter:1: header column 'user_id' is not"),
    ("user_id:token\titem_id:token\trating:token\ttimestamp:float\nu\ti\t1\t1\n", r"'rating:token' must be of type float"),
    (HEADER + "u\ti\t1\t1\nu\tj\t7\t2\n", r"ds\.inter:3: rating:float 7 outside \[1, 5\]"),
    (HEADER + "u\ti\t1\t1\nu\tj\t2\tnoon\n", r"ds\.inter:3: timestamp:float 'noon' is not a number"),
    (HEADER + "u\ti\t1\t1\nu\tj\t2\n", r"ds\.inter:3: missing value for 'timestamp:float'"),
])
def test_errors_name_file_line_and_column(tmp_path, inter, message):
    with pytest.raises(DataFormatError, match=message) as err:
        read_raw("recbole", atomic(tmp_path, inter))
    assert "\n" not in str(err.value)


def test_several_inter_files_are_refused(tmp_path):
    atomic(tmp_path, HEADER, name="a")
    atomic(tmp_path, HEADER, name="b")
    with pytest.raises(DataFormatError, match=r"several RecBole \.inter files \(a\.inter, b\.inter\)"):
        read_raw("recbole", tmp_path)
