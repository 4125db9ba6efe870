"""params.yaml → sampling.*, instruct.* and preferences.* (stages `sample`, `instruct`,
`preferences`). Owned by the instructions engineer. Defaults: the papers' where they exist
(C = 0.92, k negatives = 3, DMPO labels/history), a CPU-sized profile elsewhere."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recranker.backbones.config import RatingMFConfig
from recranker.tasks import TASKS, Task

from .base import Strict


class SamplingParams(Strict):
    mode: Literal["uniform", "adaptive"] = "adaptive"  # uniform = the ablation
    n_users: int = Field(200, ge=1)  # N, size of the final multiset U_ins
    n_importance: int | None = Field(None, ge=1)  # N1 (None = n_users)
    n_cluster: int | None = Field(None, ge=1)  # N2 (None = n_users)
    n_clusters: int = Field(10, ge=1)  # K of K-means
    penalty: float = Field(0.92, gt=0, le=1)  # C of the repetition penalty
    kmeans_n_init: int = Field(10, ge=1)
    embeddings_backbone: str | None = None  # whose user_emb.npy (None = first of run.backbones)


class InstructParams(Strict):
    tasks: list[Task] = list(TASKS)
    per_occurrence: int = Field(1, ge=1)  # instructions per task and user occurrence
    history_len: int = Field(10, ge=1)
    listwise_size: int = Field(10, ge=2, le=26)  # candidates per training listwise prompt
    listwise_liked: int = Field(1, ge=0)
    listwise_disliked: int = Field(1, ge=0)
    shuffle_candidates: bool = True  # position shifting in training
    shuffle_history: bool = False
    n_test_permutations: int = Field(1, ge=1)
    pairwise_test_pairs: Literal["adjacent", "all"] = "adjacent"
    pairwise_both_orders: bool = False
    enhance: bool = True  # prompt enhancement (hints)
    n_folds: int = Field(5, ge=2)  # cross-fitting folds of the training hints
    test_rank_hint: Literal["backbone", "rating_mf"] = "backbone"
    # 0 = every test user (the papers' tables). n > 0: only a seeded random n of them get test
    # prompts and are evaluated — for cheap CPU experiments such as the ablation; the metrics
    # then say how many users they cover.
    max_test_users: int = Field(0, ge=0)
    # Validation prompts (choose the hybrid's weights): the users whose valid item is among the
    # candidates (the others score 0 under any weights); 0 = all of them, n > 0 = a seeded n.
    max_valid_users: int = Field(0, ge=0)
    max_title_chars: int = Field(100, ge=8)
    rating_mf: RatingMFConfig = RatingMFConfig()  # the rating model behind pointwise hints
    threads: int = Field(1, ge=1)  # torch threads of the rating MF (1 is fastest on a busy CPU)

    @model_validator(mode="after")
    def _listwise_fits(self):
        if self.listwise_liked + self.listwise_disliked > self.listwise_size:
            raise ValueError("listwise_liked + listwise_disliked must not exceed listwise_size")
        return self
