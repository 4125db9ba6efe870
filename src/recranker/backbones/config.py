"""Hyper-parameters of each backbone, declared once (params.yaml ``backbone.<name>`` is this).

Defaults are tuned for ML-100K leave-one-out on 2 CPU cores; ``max_epochs`` is an upper bound,
early stopping on valid NDCG@10 usually ends sooner. Light on purpose (pydantic only): every
stage loads the params schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recranker.schema import Section


class MostPopConfig(Section):
    """No hyper-parameters: items ranked by training popularity."""


class BaseConfig(Section):
    """Fields every trainable model shares."""

    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(2048, ge=1, description="training examples per step")
    max_epochs: int = Field(100, ge=1, description="upper bound; early stopping usually ends sooner")


class MFConfig(BaseConfig):
    dim: int = Field(64, ge=1, description="embedding size")
    lr: float = Field(5e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-2, ge=0, description="L2 on the batch's embeddings, per example; tuned on valid")
    batch_size: int = Field(2048, ge=1, description="BPR triples per step")
    max_epochs: int = Field(200, ge=1, description="upper bound; early stopping usually ends sooner")


class LightGCNConfig(BaseConfig):
    dim: int = Field(64, ge=1, description="embedding size")
    n_layers: int = Field(3, ge=1, description="propagation layers")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="L2 on the batch's ego embeddings")
    batch_size: int = Field(4096, ge=1, description="one propagation per batch: big batches, fewer passes")
    max_epochs: int = Field(200, ge=1, description="upper bound; early stopping usually ends sooner")


class MixGCFConfig(LightGCNConfig):
    n_candidates: int = Field(16, ge=1, description="negative pool per positive for hop mixing")


class SGLConfig(LightGCNConfig):
    aug: Literal["ed", "nd"] = Field("ed", description="edge dropout or node dropout views")
    drop_ratio: float = Field(0.1, ge=0, lt=1, description="share of edges/nodes dropped per view")
    ssl_tau: float = Field(0.2, gt=0, description="InfoNCE temperature")
    ssl_weight: float = Field(0.1, ge=0, description="weight of the self-supervised loss")


class SequentialConfig(BaseConfig):
    dim: int = Field(64, ge=1, description="hidden size")
    n_layers: int = Field(2, ge=1, description="transformer blocks")
    n_heads: int = Field(2, ge=1, description="attention heads")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout rate")
    max_len: int = Field(50, ge=2, description="longest history the model reads")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(128, ge=1, description="sequences per step")
    max_epochs: int = Field(50, ge=1, description="best valid epoch on ML-100K: 25-45; bounds the CPU cost")


class SASRecConfig(SequentialConfig):
    loss: Literal["ce", "bce"] = Field("ce", description="full softmax (ce) or one sampled negative (bce)")


class BERT4RecConfig(SequentialConfig):
    mask_prob: float = Field(0.2, gt=0, lt=1, description="share of items masked (cloze task)")


class CL4SRecConfig(SASRecConfig):
    cl_weight: float = Field(0.1, ge=0, description="weight of the contrastive loss")
    cl_tau: float = Field(1.0, gt=0, description="InfoNCE temperature")
    crop_eta: float = Field(0.6, gt=0, le=1, description="kept share of the sequence (crop)")
    mask_gamma: float = Field(0.3, ge=0, lt=1, description="masked share (mask)")
    reorder_beta: float = Field(0.3, ge=0, le=1, description="shuffled share (reorder)")


class RatingMFConfig(Section):
    """The rating model behind pointwise hints (``recranker.backbones.rating_mf``)."""

    dim: int = Field(32, ge=1, description="factor size")
    epochs: int = Field(30, ge=1, description="passes over the training ratings")
    lr: float = Field(0.01, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="L2 per rating on the factors and biases involved")
