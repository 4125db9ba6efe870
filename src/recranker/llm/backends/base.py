"""One interface for every inference backend (hf, vllm, openai).

The ranking tasks only ever ask three questions of an LLM, so that is the whole interface:

* ``label_logprobs``: the log-probability of each answer label ("1".."5", "Yes"/"No", "A".."J")
  as the complete answer to a chat prompt (pointwise, pairwise, listwise verbalizer);
* ``continuation_logprobs``: the log-probability of given answer texts (scoring titles);
* ``generate``: free text (listwise generation; the naive baseline).

A prompt carries a ``group`` (the user): backends that can reuse a shared prefix (hf's KV cache,
vLLM's prefix caching) use it; others ignore it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np

from recranker.llm.backends.config import GenerationConfig

_GENERATION = GenerationConfig()  # the defaults: declared once, there


@dataclass(frozen=True)
class Prompt:
    """A chat prompt (no assistant turn) and the group whose prefix it shares."""

    messages: tuple[tuple[str, str], ...]  # ((role, content), ...) — hashable and immutable
    group: Hashable = None

    @classmethod
    def from_messages(cls, messages: Sequence[dict], group: Hashable = None) -> Prompt:
        return cls(tuple((str(m["role"]), str(m["content"])) for m in messages), group)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass(frozen=True)
class Sampling:
    """One generation request: the knobs of a :class:`~recranker.llm.backends.config.GenerationConfig`
    (its defaults: the RecRanker paper's vLLM settings) and a seed. Also built from HTTP requests
    (``recranker serve``), whose own schema admits wider values."""

    temperature: float = _GENERATION.temperature
    top_k: int = _GENERATION.top_k
    top_p: float = _GENERATION.top_p
    max_new_tokens: int = _GENERATION.max_new_tokens
    seed: int = 0

    @classmethod
    def of(cls, config: GenerationConfig, seed: int = 0) -> Sampling:
        """A request with CONFIG's knobs (e.g. params.yaml ``rank.sampling``) and SEED."""
        return cls(**config.model_dump(), seed=seed)


class Backend(ABC):
    """An LLM that answers ranking prompts. Results are in the order of the prompts."""

    name: str = "backend"

    @abstractmethod
    def label_logprobs(self, prompts: Sequence[Prompt], labels: Sequence[str]) -> np.ndarray:
        """[n_prompts, n_labels] log-probabilities of each label being the answer.

        Only differences within a row matter (callers renormalise over the labels); a label the
        backend cannot see (e.g. outside an API's top-k log-probs) gets ``-inf``.
        """

    def label_logprobs_multi(
        self, prompts: Sequence[Prompt], label_sets: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """Like :meth:`label_logprobs` with one label set per prompt (several tasks at once, so
        a backend can share a user's prefix across tasks). Default: one call per label set."""
        if len(prompts) != len(label_sets):
            raise ValueError(f"{len(prompts)} prompts but {len(label_sets)} label sets")
        by_set: dict[tuple[str, ...], list[int]] = {}
        for i, labels in enumerate(label_sets):
            by_set.setdefault(tuple(labels), []).append(i)
        out: list[np.ndarray] = [np.zeros(0)] * len(prompts)
        for labels, idx in by_set.items():
            lp = self.label_logprobs([prompts[i] for i in idx], list(labels))
            for i, row in zip(idx, lp):
                out[i] = np.asarray(row, dtype=np.float64)
        return out

    @abstractmethod
    def continuation_logprobs(
        self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """For each prompt, the summed log-probability of each of its continuations."""

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        """The assistant's answer text for each prompt."""

    def close(self) -> None:
        """Release resources (servers, GPU memory)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
