"""The hyper-parameters of adaptive user sampling (params.yaml ``sampling``), declared once.

Light on purpose (pydantic only): the params schema imports it, so every stage does, while only
the `sample` stage runs the algorithm in :mod:`recranker.sampling`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recranker.schema import Section


class SamplingConfig(Section):
    """Hyper-parameters of :func:`recranker.sampling.sample_users` (sizes are multiset sizes)."""

    mode: Literal["uniform", "adaptive"] = Field("adaptive", description="adaptive (eq. 2-4) or uniform (the ablation)")
    n_users: int = Field(200, ge=1, description="N, size of the final multiset U_ins")
    n_importance: int | None = Field(None, ge=1, description="N1, size of U1 (None: n_users)")
    n_cluster: int | None = Field(None, ge=1, description="N2, size of U2 (None: n_users)")
    n_clusters: int = Field(10, ge=1, description="K of K-means")
    penalty: float = Field(0.92, gt=0, le=1, description="C of the repetition penalty")
    kmeans_n_init: int = Field(10, ge=1, description="K-means restarts")

    @property
    def n1(self) -> int:
        """|U1|: ``n_importance``, or ``n_users``."""
        return self.n_importance or self.n_users

    @property
    def n2(self) -> int:
        """|U2|: ``n_cluster``, or ``n_users``."""
        return self.n_cluster or self.n_users
