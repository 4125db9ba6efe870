"""Read answers from a causal LM's token probabilities, fast on a CPU.

RecRanker's pointwise and pairwise answers are one token ("4", "Yes"), so instead of generating
and parsing text we read the next-token distribution after the prompt: an expected rating over
the rating tokens, P(Yes) vs P(No). Listwise can be scored the same way through a verbalizer
(the log-probability of each candidate's label or title as the start of the answer).

Why it is fast:

* every test prompt of one user starts with the same user-specific text (system + history), so
  the requests of a *group* (a user) share a token prefix: it is encoded once, extended once
  per task header ("How would the user rate...", found by :func:`plan_prefixes`), and its KV
  cache is expanded over batches of the candidate-specific suffixes — one user's pointwise,
  pairwise and listwise prompts all reuse one history encoding;
* only the positions whose logits are needed are projected onto the vocabulary
  (``logits_to_keep``): one position for a next-token answer;
* suffixes are sorted by length before batching, so little padding is computed.

Correctness: the shared prefix is the longest common *token* prefix of the group's full prompts
(tokenised whole, never piecewise), so the cached computation is the same function as scoring
each full prompt alone; ``tests/test_scoring.py`` checks equality within 1e-4.
"""

from .answers import binary_probability, expected_value
from .prefix_cached import PrefixCachedScorer
from .prefixes import group_members, group_prefix_len, plan_prefixes
from .requests import (
    ScoreRequest,
    ScoreResult,
    ScorerStats,
    chat_prompt_ids,
    complete_answers,
    encode_chat,
    end_of_turn_id,
    label_token_ids,
    single_token_labels,
)
from .sharded import ShardedScorer

__all__ = [
    "PrefixCachedScorer", "ScoreRequest", "ScoreResult", "ScorerStats", "ShardedScorer", "binary_probability",
    "chat_prompt_ids", "complete_answers", "encode_chat", "end_of_turn_id", "expected_value",
    "group_members", "group_prefix_len", "label_token_ids", "plan_prefixes", "single_token_labels",
]
