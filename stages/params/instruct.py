"""params.yaml → sampling.*, instruct.* and preferences.* (stages `sample`, `instruct`,
`preferences`). Owned by the instructions engineer. Defaults: the papers' where they exist
(C = 0.92, k negatives = 3, DMPO labels/history), a CPU-sized profile elsewhere."""

from __future__ import annotations

from pydantic import Field

from recranker.backbones.config import RatingMFConfig
from recranker.prompts.config import InstructConfig
from recranker.sampling_config import SamplingConfig


class SamplingParams(SamplingConfig):
    """sampling.*: the library's :class:`~recranker.sampling_config.SamplingConfig` and whose embeddings."""

    embeddings_backbone: str | None = None  # whose user_emb.npy (None = first of run.backbones)


class InstructParams(InstructConfig):
    """instruct.*: the library's :class:`~recranker.prompts.config.InstructConfig` and the stage's own knobs."""

    # 0 = every test user (the papers' tables). n > 0: only a seeded random n of them get test
    # prompts and are evaluated — for cheap CPU experiments such as the ablation; the metrics
    # then say how many users they cover.
    max_test_users: int = Field(0, ge=0)
    # Validation prompts (choose the hybrid's weights): the users whose valid item is among the
    # candidates (the others score 0 under any weights); 0 = all of them, n > 0 = a seeded n.
    max_valid_users: int = Field(0, ge=0)
    rating_mf: RatingMFConfig = RatingMFConfig()  # the rating model behind pointwise hints
    threads: int = Field(1, ge=1)  # torch threads of the rating MF (1 is fastest on a busy CPU)
