"""The hybrid ranking's weights (:class:`HybridWeights`, params.yaml ``evaluate.hybrid``), declared
once. Light on purpose (pydantic only): the params schema imports it."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from recranker.schema import Section


class HybridWeights(Section):
    """RecRanker's hybrid formula (defaults: the paper, C1 = 0.05, C2 = 0.5, C3 = 0.025, a1 = a2 = a3 = 1/3).

    U = a1·(s − m·C1) + a2·C2·wins + a3·(−m'·C3), see :func:`recranker.ranking.hybrid.utilities`;
    ``pair_votes`` says how wins are counted (:func:`recranker.ranking.tasks.pair_wins`).
    """

    model_config = ConfigDict(frozen=True)  # a grid point: hashable, never changed in place

    c1: float = Field(0.05, description="C1: pointwise penalty per backbone rank")
    c2: float = Field(0.5, description="C2: utility per pairwise win")
    c3: float = Field(0.025, description="C3: penalty per listwise position")
    a1: float = Field(1 / 3, ge=0, description="a1: weight of the pointwise utility")
    a2: float = Field(1 / 3, ge=0, description="a2: weight of the pairwise utility")
    a3: float = Field(1 / 3, ge=0, description="a3: weight of the listwise utility")
    pair_votes: Literal["hard", "soft"] = Field(
        "hard", description="pairwise wins from each answer's verdict (hard, the paper) or its P(preferred) (soft)")
