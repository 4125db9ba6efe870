"""Reading answers back (the inverse of the answer formats in :mod:`.templates`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .text import LABELS, clean_text

# "C. Title", "C) Title", "(C) Title", "[C] Title", "C: Title", optionally after "1. " or "- ".
_LINE = re.compile(r"^\s*(?:(?:\d+[.)]|[-*•])\s*)?[\[(]?([A-Z])(?:[\].):]|\s*$)")


def parse_listwise(text: str, titles: Sequence[str]) -> list[int]:
    """Indices (into the shown candidates) in the order the answer ranks them.

    A line counts by its leading letter label; a line without one counts if its text equals a
    candidate title (after whitespace normalisation). Unknown labels and repeats are ignored,
    so the result may be partial: the caller decides how to fill it (and counts failures).
    """
    n = len(titles)
    by_title = {clean_text(t, 10**6).casefold(): i for i, t in enumerate(titles)}
    seen: list[int] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        idx = None
        if m and LABELS.index(m.group(1)) < n:
            idx = LABELS.index(m.group(1))
        else:
            idx = by_title.get(clean_text(line, 10**6).casefold())
        if idx is not None and idx not in seen:
            seen.append(idx)
    return seen


def complete_order(partial: Sequence[int], n: int, fallback: Sequence[int]) -> list[int]:
    """``partial`` followed by the missing indices in ``fallback`` order (e.g. backbone order)."""
    rest = [i for i in fallback if i not in partial]
    out = list(partial) + rest
    if sorted(out) != list(range(n)):
        raise ValueError("fallback must be a permutation of range(n)")
    return out


def parse_yes_no(text: str) -> bool | None:
    """True for an answer starting with 'yes', False for 'no', None otherwise."""
    word = text.strip().split(maxsplit=1)[0].strip(".,!:").casefold() if text.strip() else ""
    return {"yes": True, "no": False}.get(word)
