"""RecBole atomic files (https://recbole.io/atomic_files.html): ``<name>.inter`` and ``<name>.item``.

A folder holds one dataset: exactly one ``*.inter`` file and optionally the ``.item`` file of the
same stem. Both are UTF-8, tab-separated, unquoted, with a typed header: every column is
``field:type``, type ∈ {token, token_seq, float, float_seq} (``user_id:token item_id:token
rating:float timestamp:float``). Mapping to the project's data:

* ``.inter``: ``user_id:token`` and ``item_id:token`` (ids kept as strings), ``rating:float``
  (checked against the dataset's rating scale), ``timestamp:float`` (the leave-one-out order;
  fractional seconds keep their order: rows are sorted by them before they become int64
  seconds). Other columns are ignored.
* ``.item``: ``item_id:token`` and the title — the field ``title``, else one ending in ``_title``
  (``movie_title:token_seq`` in RecBole's MovieLens), else ``name`` — plus every other field as
  a text column (e.g. ``release_year``, ``class``). Without a ``.item`` file titles are the ids.

Implicit-feedback data (no ``rating`` column) stops here with one line: like/dislike labels, the
pointwise rating task and DMPO's low-rated negatives all need ratings. A missing ``user_id``,
``item_id`` or ``timestamp`` column stops likewise, naming the header line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recranker.errors import DataFormatError

from ._text import LINE, read_table, to_number
from .raw import RawData, ratings_frame

TYPES = ("token", "token_seq", "float", "float_seq")
DEFAULT_SCALE = (1.0, 5.0)


def find_atomic(folder: str | Path) -> tuple[Path, Path | None] | None:
    """(the .inter file, its .item file or None) of ``folder``; None without a .inter file.
    Several .inter files: one line listing them."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    inters = sorted(folder.glob("*.inter"))
    if not inters:
        return None
    if len(inters) > 1:
        raise DataFormatError(folder, None, f"several RecBole .inter files ({', '.join(p.name for p in inters)}); "
                                            "point the dataset's path to a folder with one")  # fmt: skip
    item = inters[0].with_suffix(".item")
    return inters[0], item if item.is_file() else None


def _typed(path: Path, df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Header column → (field, type); a column without a known ``:type`` names line 1."""
    fields = {}
    for col in df.columns:
        if col == LINE:
            continue
        field, sep, kind = col.rpartition(":")
        if not sep or not field or kind not in TYPES:
            raise DataFormatError(path, 1, f"header column '{col}' is not field:type with type one of "
                                           f"{', '.join(TYPES)} (RecBole atomic file)")  # fmt: skip
        fields[field] = (col, kind)
    return fields


def _column(path: Path, fields: dict, field: str, kind: str, why: str) -> str:
    if field not in fields:
        have = " ".join(c for c, _ in fields.values())
        raise DataFormatError(path, 1, f"no '{field}:{kind}' column ({why}); header has: {have}")
    col, got = fields[field]
    if got != kind:
        raise DataFormatError(path, 1, f"column '{col}' must be of type {kind}")
    return col


def read_recbole(folder: str | Path, *, rating_scale: tuple[float, float] = DEFAULT_SCALE) -> RawData:
    """Read the atomic files of ``folder`` (module docstring)."""
    folder = Path(folder)
    found = find_atomic(folder)
    if found is None:
        raise DataFormatError(folder, None, "no RecBole .inter file in this folder")
    inter_path, item_path = found
    df = read_table(inter_path, sep="\t", encoding="utf-8", header=True, nonempty=[])
    fields = _typed(inter_path, df)
    user = _column(inter_path, fields, "user_id", "token", "the user of each interaction")
    item = _column(inter_path, fields, "item_id", "token", "the item of each interaction")
    ts = _column(inter_path, fields, "timestamp", "float", "the leave-one-out split orders each user's "
                                                          "interactions by time")  # fmt: skip
    rating = _column(inter_path, fields, "rating", "float", "implicit feedback is not supported: like/dislike "
                     "labels, the pointwise rating task and DMPO's low-rated negatives need ratings")  # fmt: skip
    for col in (user, item, ts, rating):
        empty = (df[col].str.strip() == "").to_numpy()
        if empty.any():
            line = int(df[LINE].iat[int(np.flatnonzero(empty)[0])])
            raise DataFormatError(inter_path, line, f"missing value for '{col}'")
    seconds = to_number(inter_path, df, ts)
    values = to_number(inter_path, df, rating, lo=rating_scale[0], hi=rating_scale[1])
    # Sub-second timestamps become ties at int64 seconds: order the rows by the exact value first
    # (stable, so equal times keep the file's order), then the split's row-order tie-break is the time order.
    order = np.argsort(seconds, kind="stable")
    ratings = ratings_frame(df[user].str.strip().to_numpy()[order], df[item].str.strip().to_numpy()[order],
                            values[order], np.floor(seconds[order]).astype(np.int64))  # fmt: skip
    return RawData("recbole", ratings, _items(item_path), rating_scale)


def _items(path: Path | None) -> pd.DataFrame:
    if path is None:
        return pd.DataFrame({"item": pd.Series([], dtype=str), "title": pd.Series([], dtype=str)})
    df = read_table(path, sep="\t", encoding="utf-8", header=True, nonempty=[])
    fields = _typed(path, df)
    item = _column(path, fields, "item_id", "token", "the item each line describes")
    title_field = next((f for f in fields if f == "title"), None) or next(
        (f for f in fields if f.endswith("_title")), None) or ("name" if "name" in fields else None)
    out = {"item": df[item].str.strip().to_numpy(),
           "title": df[fields[title_field][0]].str.strip().to_numpy() if title_field else df[item].to_numpy()}
    for field, (col, _) in fields.items():
        if field not in ("item_id", title_field, "title") and field not in out:
            out[field] = df[col].str.strip().to_numpy()
    return pd.DataFrame(out)
