"""Bad raw input: one-line DataFormatError naming the file and, where there is one, the line."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pytest

from recranker.data import read_raw
from recranker.errors import DataFormatError, RecrankerError

FIXTURES = Path(__file__).parent / "fixtures"
GOOD_DATA = (FIXTURES / "ml-100k" / "u.data").read_bytes()


def _ml100k(tmp_path: Path, data: bytes) -> Path:
    shutil.copy(FIXTURES / "ml-100k" / "u.item", tmp_path / "u.item")
    (tmp_path / "u.data").write_bytes(data)
    return tmp_path


def _replace_line(data: bytes, line: int, new: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[line - 1] = new
    return b"\n".join(lines)


@pytest.mark.parametrize(
    "line3, problem",
    [
        (b"10\t1\t4", "missing value for 'timestamp'"),  # truncated line
        (b"10\t1\t4\t150\t7", "expected 4 fields"),  # one field too many
        (b"10\t1\tfour\t150", "rating 'four' is not a number"),
        (b"10\t1\t9\t150", "rating 9 outside [1, 5]"),
        (b"10\tx1\t4\t150", "item 'x1' is not an integer"),
        (b"10\t1\t4\t15.5", "timestamp '15.5' is not an integer"),
        (b"10\t1\t4\t\xe9", "byte 0xe9 cannot be decoded as ascii"),  # a ratings file is ASCII
    ],
)
def test_ml100k_bad_line_names_file_and_line(tmp_path, line3, problem):
    folder = _ml100k(tmp_path, _replace_line(GOOD_DATA, 3, line3))
    with pytest.raises(DataFormatError) as err:
        read_raw("ml-100k", folder)
    msg = str(err.value)
    assert f"u.data:3: {problem}" in msg and "\n" not in msg
    assert err.value.line == 3


@pytest.mark.parametrize(
    "data, where, problem",
    [
        (b"", "u.data", "empty file"),
        (b"\n\n  \n", "u.data", "empty file"),
        (GOOD_DATA.decode().encode("utf-16"), "u.data:1", "UTF-16"),
        (GOOD_DATA[:15] + b"\x00" + GOOD_DATA[15:], "u.data:2", "NUL byte"),
    ],
)
def test_ml100k_empty_or_wrong_encoding(tmp_path, data, where, problem):
    with pytest.raises(DataFormatError, match=problem) as err:
        read_raw("ml-100k", _ml100k(tmp_path, data))
    assert str(err.value).startswith(str(tmp_path / where) + ":")


def test_ml100k_missing_file_and_bad_u_item(tmp_path):
    (tmp_path / "u.data").write_bytes(GOOD_DATA)
    with pytest.raises(DataFormatError, match=r"u.item: file not found"):
        read_raw("ml-100k", tmp_path)
    lines = (FIXTURES / "ml-100k" / "u.item").read_bytes().split(b"\n")
    lines[1] = lines[1].rsplit(b"|", 3)[0]  # genre flags cut off
    (tmp_path / "u.item").write_bytes(b"\n".join(lines))
    with pytest.raises(DataFormatError, match=r"u.item:2: missing value for 'g16'"):
        read_raw("ml-100k", tmp_path)


def test_ml1m_truncated_line(tmp_path):
    shutil.copy(FIXTURES / "ml-1m" / "movies.dat", tmp_path)
    data = (FIXTURES / "ml-1m" / "ratings.dat").read_bytes()
    (tmp_path / "ratings.dat").write_bytes(_replace_line(data, 5, b"2::10::4"))
    with pytest.raises(DataFormatError, match=r"ratings.dat:5: missing value for 'timestamp'"):
        read_raw("ml-1m", tmp_path)


def _bx(tmp_path: Path, ratings: str) -> Path:
    shutil.copy(FIXTURES / "bookcrossing" / "BX-Books.csv", tmp_path)
    (tmp_path / "BX-Book-Ratings.csv").write_text(ratings, encoding="latin-1")
    return tmp_path


def test_bookcrossing_missing_column(tmp_path):
    folder = _bx(tmp_path, '"User-ID";"ISBN";"Rating"\n"7";"000000001X";"8"\n')
    with pytest.raises(DataFormatError) as err:
        read_raw("bookcrossing", folder)
    assert "BX-Book-Ratings.csv:1: missing column 'Book-Rating'" in str(err.value)


@pytest.mark.parametrize(
    "row, problem",
    [
        ('"9";"0000000028";"seven"', "Book-Rating 'seven' is not an integer"),
        ('"9";"0000000028";"11"', "Book-Rating 11 outside [0, 10]"),
        ('"9";"0000000028";"7";"x"', "expected 3 fields, found 4"),
        ('"9";"0000000028"', "missing value for 'Book-Rating'"),
    ],
)
def test_bookcrossing_bad_rows(tmp_path, row, problem):
    folder = _bx(tmp_path, f'"User-ID";"ISBN";"Book-Rating"\n"7";"000000001X";"8"\n{row}\n')
    with pytest.raises(DataFormatError, match=re.escape(problem)) as err:
        read_raw("bookcrossing", folder)
    assert err.value.line == 3


def test_amazon_bad_lines(tmp_path):
    good = (FIXTURES / "amazon" / "2018" / "Garden.json").read_text().splitlines()
    (tmp_path / "Garden.json").write_text(
        "\n".join([*good[:2], '{"overall": 5.0, "asin": ', *good[2:]])
    )
    with pytest.raises(
        DataFormatError, match=r"Garden.json:3: not a JSON or Python-literal object"
    ):
        read_raw("amazon", tmp_path)
    (tmp_path / "Garden.json").write_text("\n".join([*good[:3], '{"overall": 5.0, "asin": "P9"}']))
    with pytest.raises(DataFormatError, match=r"Garden.json:4: missing field 'reviewerID'"):
        read_raw("amazon", tmp_path)
    (tmp_path / "Garden.json").unlink()
    (tmp_path / "Garden.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match=r"Garden.json.gz: not a valid gzip file"):
        read_raw("amazon", tmp_path)
    (tmp_path / "Garden.json.gz").write_bytes(gzip.compress("\n".join(good).encode("utf-16")))
    with pytest.raises(DataFormatError, match=r"Garden.json.gz:1: UTF-16"):
        read_raw("amazon", tmp_path)


def test_amazon_csv_bad_rating(tmp_path):
    (tmp_path / "ratings_Toys.csv").write_text("A1,B01,5.0,1300000000\nA1,B02,,1300000100\n")
    with pytest.raises(DataFormatError, match=r"ratings_Toys.csv:2: missing value for 'rating'"):
        read_raw("amazon", tmp_path)


def test_unknown_format():
    with pytest.raises(RecrankerError, match="unknown dataset format 'ml-20m'"):
        read_raw("ml-20m", FIXTURES / "ml-100k")
