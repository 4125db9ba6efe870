"""Amazon reviews reader (McAuley lab dumps, 2014 and 2018 editions), one category at a time.

Accepted rating files, for a category ``C`` (``.json`` or ``.json.gz`` alike):
- ``ratings_C.csv`` — 2014 ratings only, ``user,item,rating,timestamp``, no header;
- ``C.csv`` — 2018 ratings only, ``item,user,rating,timestamp``, no header;
- ``reviews_C.json.gz`` (2014) / ``C.json.gz`` (2018) — one object per line with ``reviewerID``,
  ``asin``, ``overall``, ``unixReviewTime`` (2014 lines may be Python literals, not JSON);
plus optional ``meta_C.json.gz`` (``asin``, ``title``, ``categories`` 2014 / ``category`` 2018,
``brand``) for item text. ``C`` may carry the ``_5`` suffix of the 5-core files; the meta file is
looked up without it. Items missing from the meta file keep their ASIN as title.
"""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recranker.errors import DataFormatError, RecrankerError

from ._text import UNIX_TIME_RANGE, decode, read_bytes, read_table, to_number
from .raw import RawData, ratings_frame

AMAZON_SCALE = (1.0, 5.0)
REVIEW_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")
_CHUNK = 200_000
_PATTERNS = [  # (regex on the file name → category, kind)
    (r"^reviews_(.+)\.json(\.gz)?$", "reviews"),
    (r"^ratings_(.+)\.csv$", "csv2014"),
    (r"^(?!meta_)(?!reviews_)(.+)\.json(\.gz)?$", "reviews"),
    (r"^(?!ratings_)(.+)\.csv$", "csv2018"),
]


def find_files(
    folder: str | Path, category: str | None = None
) -> tuple[Path, str, Path | None] | None:
    """(ratings file, kind, meta file or None) for ``category`` in ``folder``; None if absent.

    Without a category the folder must hold exactly one rating file.
    """
    folder = Path(folder)
    if folder.is_file():
        found = _classify(folder)
        if found is None:
            raise RecrankerError(f"{folder}: not an Amazon ratings/reviews file name")
        return folder, found[1], _meta(folder.parent, found[0])
    if not folder.is_dir():
        return None
    hits = []
    for p in sorted(folder.iterdir()):
        found = _classify(p) if p.is_file() else None
        if found and (category is None or found[0] == category):
            hits.append((p, *found))
    if not hits:
        return None
    if len(hits) > 1 and category is None:
        names = ", ".join(h[0].name for h in hits)
        raise RecrankerError(
            f"{folder}: several Amazon files ({names}); set the dataset's category"
        )
    hits.sort(key=lambda h: h[3])  # for one category: reviews (2014, then 2018) before CSVs
    path, cat, kind, _ = hits[0]
    return path, kind, _meta(folder, cat)


def _classify(path: Path) -> tuple[str, str, int] | None:
    """(category, kind, priority) — priority follows _PATTERNS: full reviews before CSVs."""
    for priority, (pattern, kind) in enumerate(_PATTERNS):
        m = re.match(pattern, path.name)
        if m:
            return m.group(1), kind, priority
    return None


def _meta(folder: Path, category: str) -> Path | None:
    base = re.sub(r"_5$", "", category)
    for name in (f"meta_{base}.json.gz", f"meta_{base}.json"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_amazon(path: str | Path, *, category: str | None = None) -> RawData:
    """Read one category from a folder (or a single ratings/reviews file)."""
    found = find_files(path, category)
    if found is None:
        what = f"category '{category}'" if category else "ratings or reviews file"
        raise RecrankerError(f"{path}: no Amazon {what} found")
    file, kind, meta = found
    if kind == "reviews":
        recs = read_records(file, REVIEW_FIELDS)
        user, item = recs["reviewerID"].to_numpy(), recs["asin"].to_numpy()
        rating = to_number(file, recs, "overall", lo=AMAZON_SCALE[0], hi=AMAZON_SCALE[1])
        ts = to_number(file, recs, "unixReviewTime", integer=True)
    else:
        cols = ["user", "item"] if kind == "csv2014" else ["item", "user"]
        df = read_table(file, sep=",", encoding="utf-8", columns=[*cols, "rating", "timestamp"])
        user, item = df["user"].str.strip().to_numpy(), df["item"].str.strip().to_numpy()
        rating = to_number(file, df, "rating", lo=AMAZON_SCALE[0], hi=AMAZON_SCALE[1])
        ts = to_number(file, df, "timestamp", integer=True, lo=UNIX_TIME_RANGE[0], hi=UNIX_TIME_RANGE[1])
    ratings = ratings_frame(user, item, rating, ts)
    items = (
        _items(meta)
        if meta
        else pd.DataFrame({"item": pd.Series([], dtype=str), "title": pd.Series([], dtype=str)})
    )
    return RawData("amazon", ratings, items, AMAZON_SCALE)


def _parse_line(path: Path, line_no: int, line: str) -> dict:
    try:
        obj = json.loads(line)
    except ValueError:
        try:  # the 2014 dumps write Python dict literals (single quotes)
            obj = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataFormatError(path, line_no, "not a JSON or Python-literal object") from None
    if not isinstance(obj, dict):
        raise DataFormatError(path, line_no, "not a JSON object")
    return obj


def read_records(
    path: Path,
    fields: tuple[str, ...],
    required: tuple[str, ...] | None = None,
    structured: tuple[str, ...] = (),
) -> pd.DataFrame:
    """One object per line → string columns ``fields`` plus ``_line``.

    Chunks of valid JSON go through pandas' C JSON parser; a chunk that fails (Python literals,
    a bad line) is re-parsed line by line, which also names the offending line. Each field in
    ``required`` (default: all) must be present on every line; ``structured`` fields (lists)
    are returned as parsed, the others as strings ("" when absent).
    """
    required = fields if required is None else required
    lines = decode(path, read_bytes(path), "utf-8").split("\n")
    frames = []
    for start in range(0, len(lines), _CHUNK):
        chunk = lines[start : start + _CHUNK]
        numbers = np.arange(start + 1, start + 1 + len(chunk))
        keep = np.array([bool(s.strip()) for s in chunk], dtype=bool)
        chunk = [s for s, k in zip(chunk, keep) if k]
        numbers = numbers[keep]
        if not chunk:
            continue
        df = None
        try:
            df = pd.read_json(io.StringIO("\n".join(chunk)), lines=True, dtype=False)
            if not set(required) <= set(df.columns) or df[list(required)].isna().any().any():
                df = None  # let the line-by-line pass name the line
        except ValueError:
            df = None
        if df is None or len(df) != len(chunk):
            df = pd.DataFrame([_parse_line(path, int(n), s) for n, s in zip(numbers, chunk)])
        for col in fields:
            if col not in df.columns:
                df[col] = None
        missing = df[list(required)].isna().any(axis=1).to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            absent = next(c for c in required if pd.isna(df[c].iat[row]))
            raise DataFormatError(path, int(numbers[row]), f"missing field '{absent}'")
        out = df[list(fields)].copy()
        out.insert(0, "_line", numbers)
        frames.append(out)
    if not frames:
        raise DataFormatError(path, None, "no data rows")
    df = pd.concat(frames, ignore_index=True)
    for col in fields:
        if col not in structured:
            df[col] = df[col].where(df[col].notna(), "").astype(str)
    return df


def _category(value) -> str:
    """2014 ``categories`` is a list of paths (lists); 2018 ``category`` is one path."""
    if isinstance(value, list) and value:
        first = value[0] if isinstance(value[0], list) else value
        return " > ".join(str(v) for v in first)
    return ""


def _items(path: Path) -> pd.DataFrame:
    recs = read_records(
        path,
        ("asin", "title", "categories", "category", "brand"),
        ("asin",),
        structured=("categories", "category"),
    )
    cats = recs["category"].where(
        recs["category"].map(lambda v: isinstance(v, list)), recs["categories"]
    )
    return pd.DataFrame(
        {
            "item": recs["asin"].str.strip().to_numpy(),
            "title": recs["title"].str.strip().to_numpy(),
            "category": pd.Series([_category(v) for v in cats], dtype=str).to_numpy(),
            "brand": recs["brand"].str.strip().to_numpy(),
        }
    )
