"""What a scorer is asked (:class:`ScoreRequest`), what it answers (:class:`ScoreResult`), its
counters, and the token ids of prompts and answer labels."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recranker.errors import RecrankerError


@dataclass(frozen=True)
class ScoreRequest:
    """One sequence to score.

    tokens: the full token ids (the chat prompt, optionally followed by an answer continuation).
    n_scored: how many trailing tokens of ``tokens`` form the continuation whose summed
        log-probability is returned (0 for a plain next-token question).
    targets: token ids whose next-token log-probability after ``tokens`` is returned.
    group: requests with equal groups (e.g. one user's prompts) share their common prefix.
    top_k: also return the ``top_k`` most likely next tokens with their log-probabilities.
    """

    tokens: tuple[int, ...]
    targets: tuple[int, ...] = ()
    n_scored: int = 0
    group: Hashable = None
    top_k: int = 0  # also return the k most likely next tokens (OpenAI-style top_logprobs)


@dataclass
class ScoreResult:
    """``targets``: log-probabilities (full-vocabulary log-softmax) of the requested tokens;
    ``continuation``: summed log-probability of the last ``n_scored`` tokens (0.0 if none)."""

    targets: np.ndarray
    continuation: float = 0.0
    token_logprobs: np.ndarray | None = None  # per continuation token (n_scored values)
    top: list[tuple[int, float]] | None = None  # (token id, log-prob), most likely first


@dataclass
class ScorerStats:
    """Counters for throughput reports."""

    requests: int = 0
    prompt_tokens: int = 0  # tokens in all requests
    computed_tokens: int = 0  # tokens actually run through the model (prefixes once + suffixes + pads)
    forwards: int = 0
    extra: dict = field(default_factory=dict)


def encode_chat(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template, ready for the answer."""
    ids = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def chat_prompt_ids(tokenizer, conversations: Sequence[Sequence[dict]]) -> list[list[int]]:
    """Token ids of each conversation through the chat template, ready for the answer: texts are
    rendered one by one, then tokenized in one fast batch call (the same ids as :func:`encode_chat`,
    checked in tests/test_backends.py). Every local backend encodes prompts with it (hf, vllm)."""
    texts = [tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=False)
             for c in conversations]
    return [[int(x) for x in ids] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def label_token_ids(tokenizer, labels: Sequence[str]) -> list[int]:
    """The single token of each answer label (e.g. "1".."5", "Yes"/"No"), as the model would
    emit it right after the generation prompt. Raises if a label is not one token or two labels
    share a token (their probabilities could not be told apart)."""
    out: list[int] = []
    for label in labels:
        ids = tokenizer.encode(str(label), add_special_tokens=False)
        if len(ids) != 1:
            raise RecrankerError(
                f"answer label {label!r} is {len(ids)} tokens for this tokenizer; "
                "next-token scoring needs single-token labels"
            )
        out.append(int(ids[0]))
    if len(set(out)) != len(out):
        raise RecrankerError(f"answer labels {list(labels)} share tokens: {out}")
    return out


def single_token_labels(tokenizer, label_sets: Sequence[Sequence[str]]) -> dict[tuple[str, ...], list[int] | None]:
    """Each distinct label set → its single tokens (:func:`label_token_ids`), or None where the
    labels are not one token each (those are scored as complete answers)."""
    ids: dict[tuple[str, ...], list[int] | None] = {}
    for labels in map(tuple, label_sets):
        if labels not in ids:
            try:
                ids[labels] = label_token_ids(tokenizer, labels)
            except RecrankerError:
                ids[labels] = None
    return ids


def end_of_turn_id(tokenizer) -> int:
    """The token that closes an assistant turn (eos for ChatML-style templates)."""
    eos = tokenizer.eos_token_id
    if isinstance(eos, list):
        eos = eos[0]
    if eos is None:
        raise RecrankerError("tokenizer has no eos token to end an answer")
    return int(eos)


def complete_answers(tokenizer, labels: Sequence[str]) -> list[str]:
    """Each label as a complete answer, closed by the end-of-turn token: how labels that are not one
    token are scored (the probability of "label" alone would also count answers that merely start
    with it). Every backend scores multi-token labels as these texts (hf, vllm)."""
    end = tokenizer.decode([end_of_turn_id(tokenizer)])
    return [f"{label}{end}" for label in labels]
