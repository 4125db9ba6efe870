"""RecRanker prompts: templates per task, position shifting, leak-free enhancement, builders.

Light on purpose (numpy/pandas only): the LLM code imports :mod:`.text`.
"""

from .builders import (
    TASKS,
    InstructConfig,
    build_test,
    build_training,
    listwise_order,
    make_corpus,
    test_stats,
    valid_users,
)
from .corpus import Corpus
from .enhance import assign_folds, crossfit_predict, train_only_predict
from .templates import DOMAINS, Domain, domain_for_format
from .text import RatingScale, clean_text

__all__ = [
    "DOMAINS",
    "TASKS",
    "Corpus",
    "Domain",
    "InstructConfig",
    "RatingScale",
    "assign_folds",
    "build_test",
    "build_training",
    "clean_text",
    "crossfit_predict",
    "domain_for_format",
    "listwise_order",
    "make_corpus",
    "test_stats",
    "train_only_predict",
    "valid_users",
]
