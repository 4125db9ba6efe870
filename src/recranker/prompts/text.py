"""Text pieces every template relies on: safe titles, the answer scale, candidate labels.

Titles are data, never template: whitespace of any kind (newlines, tabs, Unicode line
separators) collapses to one space and control characters are dropped, so a title can never
start a new line of the prompt (where the listwise answer format and the history list live).
Nothing is ever passed through ``str.format``, so braces in titles are inert.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from recranker.errors import RecrankerError

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WS = re.compile(r"\s+")


def clean_text(text: object, max_chars: int = 100) -> str:
    """One-line, whitespace-normalised, control-free text of at most ``max_chars`` characters."""
    s = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    s = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in s)
    s = _WS.sub(" ", s).strip()
    if len(s) > max_chars:
        s = s[: max_chars - 1].rstrip() + "…"
    return s


def label(i: int) -> str:
    """Letter label of the i-th shown candidate (A, B, ...)."""
    if not 0 <= i < len(LABELS):
        raise RecrankerError(f"at most {len(LABELS)} candidates per prompt, got index {i}")
    return LABELS[i]


@dataclass(frozen=True)
class RatingScale:
    """The dataset's integer rating scale and its one-digit answer encoding.

    Pointwise answers must be a single token, i.e. one digit. A scale whose top value is ≤ 9
    (MovieLens 1–5) is shown as is. A wider scale of at most ten values (BookCrossing 1–10) is
    shown shifted so it starts at 0 (1–10 → 0–9): the prompt *says* "0 to 9", and history
    ratings, hints and answers all use the shifted values, so the model only ever sees one
    consistent scale; :meth:`from_answer` maps back.
    """

    low: int
    high: int

    def __post_init__(self):
        if self.high <= self.low:
            raise RecrankerError(f"rating scale: high ({self.high}) must exceed low ({self.low})")
        if self.high - self.low > 9:
            raise RecrankerError(
                f"rating scale {self.low}–{self.high}: more than 10 values cannot be answered "
                "with one digit"
            )

    @classmethod
    def from_stats(cls, stats: dict) -> RatingScale:
        """From stats.json's ``rating_scale: [low, high]``."""
        try:
            low, high = stats["rating_scale"]
            return cls(round(float(low)), round(float(high)))
        except (KeyError, TypeError, ValueError):
            raise RecrankerError("stats.json: rating_scale must be [low, high]") from None

    @property
    def offset(self) -> int:
        return 0 if self.high <= 9 else self.low

    @property
    def shown_low(self) -> int:
        return self.low - self.offset

    @property
    def shown_high(self) -> int:
        return self.high - self.offset

    def to_answer(self, rating: float) -> str:
        """The one-digit answer for a rating (rounded, clipped to the scale)."""
        r = min(max(math.floor(float(rating) + 0.5), self.low), self.high)
        return str(r - self.offset)

    def show(self, value: float, decimals: int = 1) -> str:
        """A possibly fractional value (a hint) on the shown scale, clipped."""
        v = min(max(float(value), self.low), self.high) - self.offset
        return f"{v:.{decimals}f}"

    def from_answer(self, answer: str | int) -> int:
        return int(answer) + self.offset

    def answers(self) -> list[str]:
        """Every valid pointwise answer string, lowest first (the scoring vocabulary)."""
        return [str(v) for v in range(self.shown_low, self.shown_high + 1)]

    def values(self) -> list[float]:
        """The rating on the dataset's scale of each answer in :meth:`answers`."""
        return [float(v) for v in range(self.low, self.high + 1)]
