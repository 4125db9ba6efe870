"""Ranking tasks over an LLM backend, and RecRanker's hybrid ranking.

Modules: ``instructions`` (parsing), ``tasks`` (scoring per task), ``listwise`` (the parser),
``hybrid`` (the formula and the evaluation).

Light module (no torch): the backend object does the model work. Three steps:

1. ``parse_instructions``: test instructions (docs/CONTRACTS.md) → :class:`Instruction`.
2. ``run_tasks`` (all tasks, one backend call) or ``run_pointwise`` / ``run_pairwise``: one
   prediction row per instruction (``id``, ``user_id``, ``candidates``, ``scores`` — higher =
   preferred — plus extras); listwise via its letter verbalizer or generation + parser.
3. ``utilities`` / ``rerank``: the paper's hybrid formula over a user's k' backbone candidates:
   U_point = s − m·C1 (s the LLM's expected rating, m the backbone rank 1..k'),
   U_pair = C2 for the preferred item of each compared pair,
   U_list = −m'·C3 (m' the LLM's 1-based listwise position),
   U = a1·U_point + a2·U_pair + a3·U_list; ties keep the backbone order.
"""

from .hybrid import (
    HybridWeights,
    evaluate_rankings,
    list_positions,
    mean_scores_by_user,
    rerank,
    utilities,
)
from .instructions import TASKS, Instruction, parse_instruction
from .listwise import ListwiseParser, ParsedList, listwise_labels, shown_titles
from .tasks import (
    expected_ratings,
    pair_wins,
    run_pairwise,
    run_pointwise,
    run_tasks,
)

__all__ = [
    "TASKS", "HybridWeights", "Instruction", "ListwiseParser", "ParsedList", "evaluate_rankings",
    "expected_ratings", "list_positions", "listwise_labels", "mean_scores_by_user", "pair_wins",
    "parse_instruction", "rerank", "run_pairwise", "run_pointwise", "run_tasks", "shown_titles",
    "utilities",
]
