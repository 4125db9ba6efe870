"""params.yaml → datasets.<name> (stage `prepare`). Owned by the data engineer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Strict

# Nominal rating scale of each raw format (BookCrossing: 0 = implicit, only with include_implicit).
# RecBole atomic files: datasets.<name>.rating_scale (default 1..5).
RATING_SCALES = {"ml-100k": (1, 5), "ml-1m": (1, 5), "bookcrossing": (0, 10), "amazon": (1, 5)}


class DatasetParams(Strict):
    """One dataset: where its raw files are, how to clean it, and its like/dislike labels."""

    format: Literal["ml-100k", "ml-1m", "bookcrossing", "amazon", "recbole"]
    # Raw files: this folder or official .zip; else $RECRANKER_DATA/<format folder>; else download.
    path: str | None = None
    download: bool = True  # allow downloading the official archive (MovieLens only)
    kcore: int = Field(0, ge=0)  # users and items with ≥ kcore ratings, iterated to a fixed point
    # Users need ≥ this many ratings (leave-one-out needs 3); applied inside the k-core loop.
    min_interactions: int = Field(3, ge=3)
    require_title: bool = False  # drop ratings of items without a title in the metadata
    include_implicit: bool = False  # BookCrossing: keep rating-0 (implicit) interactions
    seed: int = Field(0, ge=0)  # BookCrossing: seed of the random order that stands in for timestamps
    category: str | None = None  # Amazon: category file stem, e.g. "Toys_and_Games_5"
    # RecBole: the ratings' scale [min, max] (checked on every line; the like/dislike thresholds lie in it)
    rating_scale: list[float] | None = Field(None, min_length=2, max_length=2)  # [min, max]
    like_threshold: float = 4.0  # rating ≥ this is a "like" (used by instruct)
    dislike_threshold: float = 2.0  # rating ≤ this is a "dislike"

    @model_validator(mode="after")
    def _consistent(self) -> DatasetParams:
        if self.rating_scale is not None and self.format != "recbole":
            raise ValueError("rating_scale only applies to format recbole (the other formats have their own)")
        lo, hi = self.rating_scale or RATING_SCALES.get(self.format, (1, 5))
        if lo >= hi:
            raise ValueError(f"rating_scale: need min < max, got [{lo:g}, {hi:g}]")
        if not lo <= self.dislike_threshold < self.like_threshold <= hi:
            raise ValueError(
                f"need {lo} ≤ dislike_threshold < like_threshold ≤ {hi} for format {self.format}"
            )
        if self.include_implicit and self.format != "bookcrossing":
            raise ValueError("include_implicit only applies to format bookcrossing")
        if self.category is not None and self.format != "amazon":
            raise ValueError("category only applies to format amazon")
        return self
