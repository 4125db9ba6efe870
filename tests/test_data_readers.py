"""Readers of the four raw formats, on the hand-written fixtures and on the real ML-100K."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recranker.data import prepare, read_raw
from recranker.errors import RecrankerError

FIXTURES = Path(__file__).parent / "fixtures"


def _real_ml100k() -> Path | None:
    roots = [
        os.environ.get("RECRANKER_DATA"),
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
    ]
    for root in roots:
        if root and (Path(root) / "ml-100k" / "u.data").is_file():
            return Path(root) / "ml-100k"
    return None


def test_ml100k_fixture():
    raw = read_raw("ml-100k", FIXTURES / "ml-100k")
    assert raw.format == "ml-100k" and raw.rating_scale == (1.0, 5.0)
    assert list(raw.ratings.columns) == ["user", "item", "rating", "timestamp"]
    assert len(raw.ratings) == 11
    assert raw.ratings.iloc[2].tolist() == [10, 1, 4.0, 150]  # source order kept
    assert str(raw.ratings["user"].dtype) == "int64"  # integer ids stay integers
    items = raw.items.set_index("item")
    assert items.loc[2, "title"] == "Café Noël (1996)"  # decoded as Latin-1
    assert items.loc[1, "genres"] == "Comedy|Drama"
    assert items.loc[3, "year"] == 1977
    assert pd.isna(items.loc[4, "year"]) and items.loc[4, "genres"] == "unknown"


def test_ml1m_fixture():
    raw = read_raw("ml-1m", FIXTURES / "ml-1m")
    assert len(raw.ratings) == 7 and raw.ratings["rating"].tolist()[:3] == [5.0, 3.0, 4.0]
    items = raw.items.set_index("item")
    assert items.loc[10, "title"] == "Le Café Fantôme (1999)"
    assert items.loc[10, "year"] == 1999 and items.loc[10, "genres"] == "Comedy|Romance"
    assert items.loc[20, "title"] == "Night Ferry: Return (1985)"  # ':' inside a title is fine


def test_bookcrossing_fixture_implicit_and_order():
    raw = read_raw("bookcrossing", FIXTURES / "bookcrossing", seed=3)
    assert not raw.has_timestamps and raw.rating_scale == (1.0, 10.0)
    assert (raw.ratings["rating"] > 0).all() and len(raw.ratings) == 7  # 3 implicit rows dropped
    # "000000001x" and "000000001X" are the same book.
    assert "000000001X" in set(raw.ratings.loc[raw.ratings["user"] == 9, "item"])
    assert "000000001x" not in set(raw.ratings["item"])
    books = raw.items.set_index("item")
    assert books.loc["0000000028", "title"] == 'A "Borrowed" Winter'
    assert books.loc["0000000028", "author"] == "Jörg Brandt"
    assert pd.isna(books.loc["0000000036", "year"])  # year 0 = unknown
    with_implicit = read_raw(
        "bookcrossing", FIXTURES / "bookcrossing", seed=3, include_implicit=True
    )
    assert len(with_implicit.ratings) == 10 and with_implicit.rating_scale == (0.0, 10.0)
    # The reconstructed order is a seeded permutation of the rows ...
    assert sorted(with_implicit.ratings["timestamp"]) == list(range(10))
    again = read_raw("bookcrossing", FIXTURES / "bookcrossing", seed=3)
    other = read_raw("bookcrossing", FIXTURES / "bookcrossing", seed=4)
    assert again.ratings.equals(raw.ratings)
    assert not other.ratings["timestamp"].equals(raw.ratings["timestamp"])
    # ... and the explicit rows keep their relative order whether or not implicit ones are kept.
    explicit = with_implicit.ratings[with_implicit.ratings["rating"] > 0]
    assert np.array_equal(
        np.argsort(explicit["timestamp"].to_numpy()),
        np.argsort(raw.ratings["timestamp"].to_numpy()),
    )


def test_amazon_2014_csv_dedupes_to_latest():
    raw = read_raw("amazon", FIXTURES / "amazon" / "csv")
    assert len(raw.ratings) == 7 and raw.items.empty
    p = prepare(raw)
    assert p.stats["filtering"]["duplicates_dropped"] == 1
    a1 = p.interactions[p.interactions["user_id"] == 0]
    assert a1["rating"].tolist() == [3.0, 2.0, 1.0]  # B01 kept with its latest rating (1.0)
    assert p.items["title"].tolist() == ["B01", "B02", "B03"]  # no meta: the ASIN stands in


def test_amazon_2014_reviews_python_literals_and_meta():
    raw = read_raw("amazon", FIXTURES / "amazon" / "2014")
    assert len(raw.ratings) == 6  # the blank line is skipped
    assert raw.ratings.iloc[1].tolist() == ["A1", "B02", 3.0, 1300000100]  # a Python-literal line
    meta = raw.items.set_index("item")
    assert meta.loc["B01", "title"] == "Wooden Puzzle Cube"
    assert meta.loc["B01", "category"] == "Toys & Games > Puzzles"


def test_amazon_2018_gzipped_equals_plain(tmp_path):
    plain = read_raw("amazon", FIXTURES / "amazon" / "2018", category="Garden")
    for f in (FIXTURES / "amazon" / "2018").iterdir():
        (tmp_path / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes(), mtime=0))
    packed = read_raw("amazon", tmp_path, category="Garden")
    assert packed.ratings.equals(plain.ratings) and packed.items.equals(plain.items)
    assert plain.items.set_index("item").loc["P1", "category"] == "Patio, Lawn & Garden > Watering"
    # A single file may be given instead of a folder.
    single = read_raw("amazon", tmp_path / "Garden.json.gz")
    assert single.ratings.equals(plain.ratings)


def test_amazon_folder_with_several_categories_needs_one(tmp_path):
    shutil.copy(FIXTURES / "amazon" / "csv" / "ratings_Toys.csv", tmp_path)
    shutil.copy(FIXTURES / "amazon" / "2018" / "Garden.json", tmp_path)
    with pytest.raises(RecrankerError, match="category"):
        read_raw("amazon", tmp_path)
    assert len(read_raw("amazon", tmp_path, category="Toys").ratings) == 7
    # For one category, the full reviews file wins over the ratings-only CSV.
    shutil.copy(FIXTURES / "amazon" / "2014" / "reviews_Toys.json", tmp_path)
    assert len(read_raw("amazon", tmp_path, category="Toys").ratings) == 6


def test_every_fixture_prepares_to_the_contract():
    for fmt, folder in [
        ("ml-100k", "ml-100k"),
        ("ml-1m", "ml-1m"),
        ("bookcrossing", "bookcrossing"),
        ("amazon", "amazon/2018"),
    ]:
        p = prepare(read_raw(fmt, FIXTURES / folder))
        inter = p.interactions
        assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp", "split"]
        assert [str(t) for t in inter.dtypes[:4]] == ["int64", "int64", "float64", "int64"]
        assert set(inter["split"]) == {"train", "valid", "test"}
        assert p.items["item_id"].tolist() == list(range(p.stats["items"]))
        assert (p.items["title"].str.len() > 0).all()


@pytest.mark.skipif(_real_ml100k() is None, reason="real ML-100K not available")
def test_real_ml100k_and_its_split():
    raw = read_raw("ml-100k", _real_ml100k())
    assert len(raw.ratings) == 100_000
    assert raw.ratings["user"].nunique() == 943 and raw.ratings["item"].nunique() == 1682
    assert len(raw.items) == 1682
    p = prepare(raw)
    inter = p.interactions
    assert (p.stats["users"], p.stats["items"], p.stats["ratings"]) == (943, 1682, 100_000)
    assert p.stats["splits"] == {"train": 98_114, "valid": 943, "test": 943}
    counts = inter.groupby("user_id")["split"].value_counts().unstack(fill_value=0)
    assert (counts["test"] == 1).all() and (counts["valid"] == 1).all()
    ts = inter.pivot_table(index="user_id", columns="split", values="timestamp", aggfunc="max")
    assert (ts["test"] >= ts["train"]).all() and (ts["valid"] <= ts["test"]).all()
    assert (ts["valid"] >= ts["train"]).all()
    # Ids follow the original ids: user "1" → 0, item "1682" → 1681.
    m = p.id_map
    assert m.loc[(m["kind"] == "user") & (m["id"] == 0), "original"].item() == "1"
    assert m.loc[(m["kind"] == "item") & (m["id"] == 1681), "original"].item() == "1682"
