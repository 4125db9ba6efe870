"""From a reader's RawData to the `prepare` outputs (see docs/CONTRACTS.md).

Order of operations, each documented where it is implemented:
1. drop duplicate (user, item) pairs (keep the latest);
2. optionally drop ratings of items without a title (``require_title``; LLM prompts need one);
3. one iterative filter that is both the k-core and the ``min_interactions`` user bound: users
   need ≥ max(kcore, min_interactions) rows, items ≥ kcore. Applying the user bound inside the
   same fixed-point loop (rather than once, after the k-core) guarantees the result still is a
   k-core after users are dropped;
4. contiguous ids ordered by original id;
5. leave-one-out by time (stable on source row order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recranker.errors import RecrankerError
from recranker.io import atomic_path, read_parquet

from .filtering import drop_duplicates, kcore
from .raw import RawData
from .split import SPLITS, encode_ids, leave_one_out

FILES = ("interactions.parquet", "id_map.parquet", "items.parquet", "stats.json")


@dataclass(frozen=True)
class Prepared:
    """The four `prepare` outputs in memory."""

    interactions: pd.DataFrame  # user_id, item_id, rating, timestamp, split
    id_map: pd.DataFrame  # kind, id, original
    items: pd.DataFrame  # item_id, title, per-source text columns
    stats: dict[str, Any]


def prepare(
    raw: RawData,
    *,
    kcore_k: int = 0,
    min_interactions: int = 3,
    require_title: bool = False,
    name: str | None = None,
) -> Prepared:
    """Filter, re-index and split ``raw`` (steps in the module docstring)."""
    if min_interactions < 3:
        raise RecrankerError(
            f"min_interactions: must be ≥ 3 for leave-one-out, got {min_interactions}"
        )
    if kcore_k < 0:
        raise RecrankerError(f"kcore: must be ≥ 0, got {kcore_k}")
    ratings = raw.ratings.assign(row=np.arange(len(raw.ratings), dtype=np.int64))
    n_raw = len(ratings)
    ratings = drop_duplicates(ratings)
    n_dedup = len(ratings)
    titled = set(
        raw.items.loc[raw.items["title"].astype(str).str.strip() != "", "item"].astype(str)
    )
    if require_title:
        codes, uniques = pd.factorize(ratings["item"])
        has_title = np.array([str(u) in titled for u in uniques], dtype=bool)  # per item
        ratings = ratings.loc[has_title[codes]]
    n_titled = len(ratings)
    ratings = kcore(ratings, max(kcore_k, min_interactions), kcore_k)
    if ratings.empty:
        raise RecrankerError(
            f"{name or raw.format}: no interactions left after filtering "
            f"(kcore={kcore_k}, min_interactions={min_interactions}, require_title={require_title})"
        )
    encoded, id_map = encode_ids(ratings)
    inter = leave_one_out(encoded, order="row")
    inter = inter[["user_id", "item_id", "rating", "timestamp", "split"]]
    items = _items(raw.items, id_map)
    n_users = int(inter["user_id"].max()) + 1
    n_items = len(items)
    splits = inter["split"].value_counts()
    stats = {
        "dataset": name or raw.format,
        "format": raw.format,
        "users": n_users,
        "items": n_items,
        "ratings": len(inter),
        "density": len(inter) / (n_users * n_items),
        "splits": {s: int(splits.get(s, 0)) for s in SPLITS},
        "rating_min": float(inter["rating"].min()),
        "rating_max": float(inter["rating"].max()),
        "rating_scale": [float(raw.rating_scale[0]), float(raw.rating_scale[1])],
        "has_timestamps": raw.has_timestamps,
        "items_without_title": int(
            (~id_map.loc[id_map["kind"] == "item", "original"].isin(list(titled))).sum()
        ),
        "filtering": {
            "raw_ratings": n_raw,
            "duplicates_dropped": n_raw - n_dedup,
            "untitled_dropped": n_dedup - n_titled,
            "core_dropped": n_titled - len(inter),
            "kcore": kcore_k,
            "min_interactions": min_interactions,
            "require_title": require_title,
        },
    }
    return Prepared(inter.reset_index(drop=True), id_map, items, stats)


def _items(raw_items: pd.DataFrame, id_map: pd.DataFrame) -> pd.DataFrame:
    """One row per encoded item; a missing title falls back to the original id (never empty)."""
    kept = id_map.loc[id_map["kind"] == "item", ["id", "original"]]
    meta = raw_items.assign(item=raw_items["item"].astype(str))
    meta = meta.drop_duplicates("item", keep="first").set_index("item")
    out = meta.reindex(kept["original"].to_numpy())
    title = out["title"].astype(str).where(out["title"].notna(), "")
    title = title.where(title.str.strip() != "", kept["original"].to_numpy())
    out["title"] = title.to_numpy()
    out.insert(0, "item_id", kept["id"].to_numpy())
    for col in out.columns[1:]:
        if pd.api.types.is_string_dtype(out[col]) or out[col].dtype == object:
            out[col] = out[col].fillna("").astype(str)
    return out.reset_index(drop=True)


def write_prepared(prepared: Prepared, out_dir: str | Path) -> Path:
    """Write the four files into ``out_dir`` as one atomic directory (all or nothing)."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        prepared.interactions.to_parquet(tmp / "interactions.parquet", index=False)
        prepared.id_map.to_parquet(tmp / "id_map.parquet", index=False)
        prepared.items.to_parquet(tmp / "items.parquet", index=False)
        (tmp / "stats.json").write_text(
            json.dumps(prepared.stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    return out_dir


def load_prepared(out_dir: str | Path) -> Prepared:
    """Read back what :func:`write_prepared` wrote (for downstream stages and tests)."""
    out_dir = Path(out_dir)
    missing = [f for f in FILES if not (out_dir / f).is_file()]
    if missing:
        raise RecrankerError(f"{out_dir / missing[0]}: not found (run `recranker prepare` first)")
    return Prepared(
        read_parquet(out_dir / "interactions.parquet"),
        read_parquet(out_dir / "id_map.parquet"),
        read_parquet(out_dir / "items.parquet"),
        json.loads((out_dir / "stats.json").read_text(encoding="utf-8")),
    )
