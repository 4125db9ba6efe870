"""params.yaml → rank.* and evaluate.* (stages `rank`, `evaluate`). Owned by the ranking engineer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict


class RankParams(Strict):
    tasks: list[Literal["pointwise", "pairwise", "listwise"]] = ["pointwise"]
    batch_size: int = Field(8, ge=1)


class EvaluateParams(Strict):
    ks: list[int] = [3, 5]
