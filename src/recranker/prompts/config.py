"""The hyper-parameters of the RecRanker instructions (:class:`InstructConfig`, their one
declaration). Light on purpose (pydantic only): the params schema imports it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recranker.schema import Section
from recranker.tasks import TASKS, Task


class InstructConfig(Section):
    """How the training and ranking instructions are built (see :mod:`.training`, :mod:`.ranking_rows`)."""

    tasks: list[Task] = Field(list(TASKS), min_length=1, description="tasks to build instructions for")
    per_occurrence: int = Field(1, ge=1, description="instructions per task and user occurrence")
    history_len: int = Field(10, ge=1, description="items in a prompt's history")
    listwise_size: int = Field(10, ge=2, le=26, description="candidates per training listwise prompt")
    listwise_liked: int = Field(1, ge=0, description="liked candidates per training listwise prompt")
    listwise_disliked: int = Field(1, ge=0, description="disliked candidates per training listwise prompt")
    shuffle_candidates: bool = Field(True, description="position shifting: candidates in a seeded random order")
    shuffle_history: bool = Field(False, description="history in a seeded random order")
    n_test_permutations: int = Field(1, ge=1, description="shown orders per ranking user (with shuffle_candidates)")
    pairwise_test_pairs: Literal["adjacent", "all"] = Field(
        "adjacent", description="ranking pairs: adjacent in the backbone order, or all")
    pairwise_both_orders: bool = Field(
        True, description="each ranking pair in both orders: position-consistency and its vote")
    enhance: bool = Field(True, description="prompt enhancement: rating-model hints in the prompts")
    n_folds: int = Field(5, ge=2, description="cross-fitting folds of the training hints")
    test_rank_hint: Literal["backbone", "rating_mf"] = Field(
        "backbone", description="which scores order the ranking prompts' pairwise/listwise hints")
    max_title_chars: int = Field(100, ge=8, description="titles longer than this are cut")
    negatives: Literal["uniform", "popular"] = Field(
        "uniform", description="never-interacted training candidates: uniform (the paper) or by training popularity")

    @model_validator(mode="after")
    def _listwise_fits(self):
        if self.listwise_liked + self.listwise_disliked > self.listwise_size:
            raise ValueError("listwise_liked + listwise_disliked must not exceed listwise_size")
        return self
