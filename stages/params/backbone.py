"""params.yaml → backbone.* (stage `backbone`). Owned by the backbone engineer."""

from __future__ import annotations

from pydantic import Field

from .base import Strict


class MFParams(Strict):
    dim: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(2048, ge=1)
    max_epochs: int = Field(200, ge=1)


class BackboneParams(Strict):
    top_k: int = Field(10, ge=1)  # k' candidates per user
    patience: int = Field(10, ge=1)
    mf: MFParams = MFParams()
