"""Listwise answers: a robust parser from generated text back to candidates (normalised and
fuzzy title matching; duplicates, unknown titles and missing candidates handled), the letter
labels of the verbalizer, and the backbone-order fallback.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .instructions import Instruction

# -- listwise ---------------------------------------------------------------------------------

_NUMBERING = re.compile(r"^\s*(?:(?:\d{1,3}|[ivx]{1,4})\s*[.):\]-]\s*|[-*\u2022>#]+\s*)+", re.IGNORECASE)
_LABEL = re.compile(r"^[\[(]?([A-Z])(?:[\].):\-]\s*|\s*$)")
_STRONG = re.compile(r"\s*(?:;|>|\||\t)\s*")
_YEAR = re.compile(r"\s*\((?:\d{4}|[^()]*)\)\s*$")
_ARTICLE = re.compile(r"^(.*), (the|a|an|les|la|le|il|der|die|das|el)$", re.IGNORECASE)
_MAX_LINES = 200
_MAX_LINE_CHARS = 300


def _norm(text: str) -> str:
    t = unicodedata.normalize("NFKD", text).casefold()
    t = "".join(c if c.isalnum() else " " for c in t if not unicodedata.combining(c))
    return " ".join(t.split())


def _aliases(title: str) -> set[str]:
    """Normalised forms a model may write a title in: as is, without the trailing "(1995)", and
    with a trailing article moved to the front ("Godfather, The" → "The Godfather")."""
    forms = {title}
    bare = _YEAR.sub("", title).strip()
    forms.add(bare)
    for t in (title, bare):
        m = _ARTICLE.match(_YEAR.sub("", t).strip())
        if m:
            forms.add(f"{m.group(2)} {m.group(1)}")
    return {f for f in (_norm(x) for x in forms) if f}


@dataclass(frozen=True)
class ParsedList:
    """order: indices into the shown candidates (a full permutation); parsed: how many of them
    the text named (the rest were appended in fallback order); complete: parsed == n."""

    order: tuple[int, ...]
    parsed: int

    @property
    def complete(self) -> bool:
        return self.parsed == len(self.order)


class ListwiseParser:
    """Reads a listwise answer ("C. Heat (1995)" lines, best first) back into candidate indices.

    Never raises and always returns a permutation. Per line: numbering/bullets are stripped; a
    leading letter label (A., (B), [C], D:) within range wins; otherwise the text is matched to a
    title after normalisation (case, accents, punctuation), then fuzzily (difflib, ratio ≥
    ``cutoff``); a line naming nothing is split on ``; > | ,`` and the pieces are tried. Repeats,
    unknown labels/titles are ignored; candidates never named follow in ``fallback`` order.
    """

    def __init__(self, titles: Sequence[str], cutoff: float = 0.75):
        self.n = len(titles)
        self.cutoff = cutoff
        self.aliases: list[tuple[str, int]] = []  # (normalised form, candidate index)
        for i, t in enumerate(titles):
            for a in _aliases(str(t)):
                self.aliases.append((a, i))
        self.exact: dict[str, int] = {}
        for a, i in self.aliases:
            self.exact.setdefault(a, i)
        # One matcher per alias with the alias as the (indexed) second sequence: indexing is
        # the expensive part of difflib and is done once, not once per line.
        self._matchers = [(difflib.SequenceMatcher(None, "", a, autojunk=False), i) for a, i in self.aliases]
        self._memo: dict[str, int | None] = {}

    def _title(self, text: str) -> int | None:
        t = _norm(text[:_MAX_LINE_CHARS])
        if not t:
            return None
        if t in self.exact:
            return self.exact[t]
        if t in self._memo:
            return self._memo[t]
        best, best_r = None, self.cutoff
        for sm, i in self._matchers:
            sm.set_seq1(t)
            if sm.real_quick_ratio() < best_r or sm.quick_ratio() < best_r:
                continue
            r = sm.ratio()
            if r > best_r or (r == best_r and best is None):
                best, best_r = i, r
        if len(self._memo) < 10_000:
            self._memo[t] = best
        return best

    def _line(self, line: str, depth: int = 0) -> list[int]:
        body = _NUMBERING.sub("", line, count=1).strip()
        if not body:
            return []
        m = _LABEL.match(body)
        if m and ord(m.group(1)) - 65 < self.n:
            return [ord(m.group(1)) - 65]
        hit = self._title(body)
        whole = [] if hit is None else [hit]
        if depth >= 2:
            return whole
        # One line naming several items: strong separators first, commas (which occur inside
        # titles such as "Godfather, The") only if there were none. The split reading wins
        # when it names at least two different candidates.
        pieces = _STRONG.split(body[:_MAX_LINE_CHARS])
        if len(pieces) == 1:
            pieces = body[:_MAX_LINE_CHARS].split(",")
        if len(pieces) == 1:
            return whole
        split = [i for piece in pieces for i in self._line(piece, depth + 1)]
        return split if len(set(split)) >= 2 or not whole else whole

    def parse(self, text: str, fallback: Sequence[int] | None = None) -> ParsedList:
        seen: list[int] = []
        lines = str(text).splitlines()[:_MAX_LINES]
        for line in lines:
            for i in self._line(line):
                if i not in seen:
                    seen.append(i)
            if len(seen) == self.n:
                break
        parsed = len(seen)
        fb = list(fallback) if fallback is not None else list(range(self.n))
        if sorted(fb) != list(range(self.n)):
            fb = list(range(self.n))
        rest = [i for i in fb if i not in seen]
        return ParsedList(tuple(seen + rest), parsed)


def _backbone_fallback(ins: Instruction, backbone_rank: Mapping[int, Mapping[int, int]] | None) -> list[int]:
    """Shown indices sorted by backbone rank (``meta.ranks`` of the instruction, else
    ``backbone_rank``; unknown ranks last, in shown order)."""
    ranks = ins.meta.get("ranks")
    if not (isinstance(ranks, list) and len(ranks) == len(ins.candidates)):
        by_item = (backbone_rank or {}).get(ins.user_id, {})
        ranks = [by_item.get(c) for c in ins.candidates]
    big = 10**9
    return sorted(range(len(ins.candidates)),
                  key=lambda i: (ranks[i] if isinstance(ranks[i], (int, float)) else big, i))


_SHOWN = re.compile(r"^([A-Z])\. (.+)$")


def shown_titles(ins: Instruction, titles: Mapping[int, str] | None = None) -> list[str]:
    """The candidate titles as the prompt shows them ("A. <title>" lines of the last user
    turn), else from ``titles`` (item → title), else "Item <id>"."""
    text = next((m["content"] for m in reversed(ins.messages) if m["role"] == "user"), "")
    found: dict[int, str] = {}
    for line in text.splitlines():
        m = _SHOWN.match(line)
        if m and ord(m.group(1)) - 65 < len(ins.candidates):
            found[ord(m.group(1)) - 65] = m.group(2).strip()
    if len(found) == len(ins.candidates):
        return [found[i] for i in range(len(ins.candidates))]
    return [(titles or {}).get(c, f"Item {c}") for c in ins.candidates]


def _list_row(ins: Instruction, order: Sequence[int], **extra) -> dict:
    """Scores = −(1-based LLM position), so higher = preferred and means over permutations are
    −m' averaged."""
    pos = {idx: k + 1 for k, idx in enumerate(order)}
    return {"id": ins.id, "user_id": ins.user_id, "candidates": list(ins.candidates),
            "scores": [-float(pos[i]) for i in range(len(ins.candidates))], **extra}


def listwise_labels(ins: Instruction) -> list[str]:
    from recranker.prompts.text import label

    return [label(i) for i in range(len(ins.candidates))]
