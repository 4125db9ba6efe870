"""params.yaml → datasets.<name> (stage `prepare`). Owned by the data engineer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict


class DatasetParams(Strict):
    format: Literal["ml-100k", "ml-1m", "bookcrossing", "amazon"]
    path: str | None = None  # folder or official archive; else $RECRANKER_DATA; else download
    kcore: int = Field(0, ge=0)
    min_interactions: int = Field(3, ge=3)
    like_threshold: float = 4.0
    dislike_threshold: float = 2.0
