"""Answers read from the log-probabilities of the answer tokens: an expected rating, P(Yes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recranker.errors import RecrankerError


def expected_value(target_logprobs: np.ndarray, values: Sequence[float], mode: str = "expected") -> float:
    """Softmax restricted to the answer tokens, then the expected value (or the argmax value).

    The restriction renormalises away the probability the model puts elsewhere, so an untuned
    model that "barely follows the format" still yields a graded score.
    """
    lp = np.asarray(target_logprobs, dtype=np.float64)
    vals = np.asarray(values, dtype=np.float64)
    if lp.shape != vals.shape:
        raise RecrankerError(f"{lp.size} answer log-probs for {vals.size} values")
    if mode == "argmax":
        return float(vals[int(np.argmax(lp))])
    if mode != "expected":
        raise RecrankerError(f"rank: unknown rating mode {mode!r} (expected|argmax)")
    p = np.exp(lp - lp.max())
    return float((p / p.sum()) @ vals)


def binary_probability(target_logprobs: np.ndarray) -> float:
    """P(first label) / (P(first) + P(second)), e.g. P(Yes) restricted to {Yes, No}."""
    a, b = (float(x) for x in target_logprobs[:2])
    m = max(a, b)
    ea, eb = np.exp(a - m), np.exp(b - m)
    return float(ea / (ea + eb))
