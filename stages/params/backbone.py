"""params.yaml → backbone.* (stage `backbone`).

One sub-section per model: the model's own config (``recranker.backbones.config``, the single
declaration of its hyper-parameters, defaults, ranges and docs). Early stopping on valid NDCG@10
is checked every ``eval_every`` epochs, for ``patience`` checks.
"""

from __future__ import annotations

from pydantic import Field

from recranker.backbones.config import (
    BERT4RecConfig,
    CL4SRecConfig,
    LightGCNConfig,
    MFConfig,
    MixGCFConfig,
    MostPopConfig,
    SASRecConfig,
    SGLConfig,
)

from .base import Strict


class BackboneParams(Strict):
    top_k: int = Field(10, ge=1)  # k' candidates per user and split
    patience: int = Field(10, ge=1)  # validations without improvement before stopping
    eval_every: int = Field(1, ge=1)  # epochs between validations
    threads: int = Field(2, ge=1)  # torch intra-op threads
    mostpop: MostPopConfig = MostPopConfig()
    mf: MFConfig = MFConfig()
    lightgcn: LightGCNConfig = LightGCNConfig()
    mixgcf: MixGCFConfig = MixGCFConfig()
    sgl: SGLConfig = SGLConfig()
    sasrec: SASRecConfig = SASRecConfig()
    bert4rec: BERT4RecConfig = BERT4RecConfig()
    cl4srec: CL4SRecConfig = CL4SRecConfig()

    def model(self, name: str) -> Strict:
        """The sub-section of backbone ``name``."""
        from recranker.errors import RecrankerError

        section = getattr(self, name, None) if name in type(self).model_fields else None
        if not isinstance(section, Strict) or name in {
            "top_k",
            "patience",
            "eval_every",
            "threads",
        }:
            raise RecrankerError(f"params.yaml: backbone.{name}: no such backbone")
        return section


# The backbones a params file can name: one sub-section each (recranker.backbones.MODELS, checked by
# tests/test_backbones.py), without importing the library (every stage loads params).
BACKBONES = tuple(n for n, f in BackboneParams.model_fields.items() if isinstance(f.default, Strict))
