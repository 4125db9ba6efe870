"""params.yaml → backbone.* (stage `backbone`). Owned by the backbone engineer.

One sub-section per model; the field names equal the model's Config dataclass in
``recranker.backbones.<model>`` (a test checks both directions). Defaults are tuned for
ML-100K leave-one-out on 2 CPU cores; ``max_epochs`` is an upper bound, early stopping on
valid NDCG@10 (checked every ``eval_every`` epochs, ``patience`` checks) usually ends sooner.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict


class _Trainable(Strict):
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(2048, ge=1)
    max_epochs: int = Field(200, ge=1)


class MostPopParams(Strict):
    """No hyper-parameters: items ranked by training popularity."""


class MFParams(_Trainable):
    dim: int = Field(64, ge=1)
    lr: float = Field(5e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)  # L2 on the batch's embeddings, per example; tuned on valid


class LightGCNParams(_Trainable):
    dim: int = Field(64, ge=1)
    n_layers: int = Field(3, ge=1)
    lr: float = Field(1e-2, gt=0)
    batch_size: int = Field(4096, ge=1)  # one propagation per batch: big batches, fewer passes
    weight_decay: float = Field(1e-4, ge=0)


class MixGCFParams(LightGCNParams):
    n_candidates: int = Field(16, ge=1)  # negative pool per positive for hop mixing


class SGLParams(LightGCNParams):
    aug: Literal["ed", "nd"] = "ed"  # edge dropout or node dropout views
    drop_ratio: float = Field(0.1, ge=0, lt=1)
    ssl_tau: float = Field(0.2, gt=0)
    ssl_weight: float = Field(0.1, ge=0)


class _Sequential(_Trainable):
    dim: int = Field(64, ge=1)
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    max_len: int = Field(50, ge=2)
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(50, ge=1)  # best valid epoch on ML-100K: 25-45


class SASRecParams(_Sequential):
    loss: Literal["ce", "bce"] = "ce"


class BERT4RecParams(_Sequential):
    mask_prob: float = Field(0.2, gt=0, lt=1)


class CL4SRecParams(SASRecParams):
    cl_weight: float = Field(0.1, ge=0)
    cl_tau: float = Field(1.0, gt=0)
    crop_eta: float = Field(0.6, gt=0, le=1)  # kept share of the sequence
    mask_gamma: float = Field(0.3, ge=0, lt=1)  # masked share
    reorder_beta: float = Field(0.3, ge=0, le=1)  # shuffled share


class BackboneParams(Strict):
    top_k: int = Field(10, ge=1)  # k' candidates per user and split
    patience: int = Field(10, ge=1)  # validations without improvement before stopping
    eval_every: int = Field(1, ge=1)  # epochs between validations
    threads: int = Field(2, ge=1)  # torch intra-op threads
    mostpop: MostPopParams = MostPopParams()
    mf: MFParams = MFParams()
    lightgcn: LightGCNParams = LightGCNParams()
    mixgcf: MixGCFParams = MixGCFParams()
    sgl: SGLParams = SGLParams()
    sasrec: SASRecParams = SASRecParams()
    bert4rec: BERT4RecParams = BERT4RecParams()
    cl4srec: CL4SRecParams = CL4SRecParams()

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
