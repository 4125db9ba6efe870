"""The prompt text of the three RecRanker tasks, split into a shared prefix and a task suffix.

Layout of every prompt (``messages`` = one system turn + one user turn, no assistant turn)::

    system: SYSTEM text (depends on the dataset's domain only)
    user:   <history block>            ← user-specific, identical for all of a user's prompts
            <task suffix>              ← question and answer format, then candidate(s), optional hint

The history block ends with a newline and never depends on the task or the candidates, so all
test prompts of one user (and permutation) share a byte-identical prefix whose KV cache the
ranking stage computes once. The history always shows ratings, for every task, for that reason.

Answers (the assistant's completion in training, what the ranker reads at test time):

* pointwise: the rating as one digit on the shown scale (``"4"``; see :class:`RatingScale`);
* pairwise: ``"Yes"`` or ``"No"`` (does the user prefer candidate A over candidate B?);
* listwise: every candidate on its own line, best first, as ``"<letter>. <title>"``
  (e.g. ``"C. Heat (1995)\\nA. Toy Story (1995)"``); :class:`recranker.ranking.ListwiseParser`
  reads the leading letters back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .text import RatingScale, label


@dataclass(frozen=True)
class Domain:
    singular: str
    plural: str


DOMAINS = {
    "movie": Domain("movie", "movies"),
    "book": Domain("book", "books"),
    "item": Domain("item", "items"),
}
_FORMAT_DOMAIN = {"ml-100k": "movie", "ml-1m": "movie", "bookcrossing": "book", "amazon": "item"}


def domain_for_format(fmt: str) -> Domain:
    """The nouns for a dataset format (``item`` for anything unknown)."""
    return DOMAINS[_FORMAT_DOMAIN.get(fmt, "item")]


def system_text(domain: Domain) -> str:
    return (
        f"You are a recommender system. From the {domain.plural} a user has rated, "
        f"you judge how much the user will like other {domain.plural}."
    )


def history_block(
    titles: Sequence[str], shown_ratings: Sequence[str], scale: RatingScale, domain: Domain,
    shuffled: bool,
) -> str:
    """The user-specific prefix of the user message (ends with a newline)."""
    order = "in random order" if shuffled else "oldest first"
    head = (
        f"The user has rated these {domain.plural} ({order}) on a scale of "
        f"{scale.shown_low} to {scale.shown_high}:\n"
    )
    return head + "".join(f"- {t}: {r}\n" for t, r in zip(titles, shown_ratings, strict=True))


# The pointwise and pairwise suffixes put their fixed lines (question, answer format, what the
# hint means) before the candidate-specific ones: a user's ~10 prompts of a task then share them
# in the cached prefix, and only the titles and the hint value are computed per candidate.
_HINT_NOTE = "The hint is what a conventional recommender system predicts."


def pointwise_suffix(title: str, scale: RatingScale, domain: Domain, hint: str | None) -> str:
    lines = [
        (f"How would the user rate the following {domain.singular} on a scale of "
         f"{scale.shown_low} to {scale.shown_high}? "
         f"Answer with a single number from {scale.shown_low} to {scale.shown_high}."),
        *([_HINT_NOTE] if hint else []),
        f"{domain.singular.capitalize()}: {title}",
        *([f"Hint: a rating of {hint}."] if hint else []),
    ]
    return "\n" + "\n".join(lines)


def pairwise_suffix(title_a: str, title_b: str, domain: Domain, hint_a_higher: bool | None) -> str:
    hint = None if hint_a_higher is None else ("A over B" if hint_a_higher else "B over A")
    lines = [
        f"Would the user prefer {domain.singular} A over {domain.singular} B? Answer Yes or No.",
        *([_HINT_NOTE] if hint else []),
        f"A. {title_a}",
        f"B. {title_b}",
        *([f"Hint: {hint}."] if hint else []),
    ]
    return "\n" + "\n".join(lines)


def listwise_suffix(titles: Sequence[str], domain: Domain, hint_order: Sequence[int] | None) -> str:
    # One listwise prompt per user: nothing to share, so the answer format stays last, where a
    # small model follows it best.
    n = len(titles)
    lines = "".join(f"{label(i)}. {t}\n" for i, t in enumerate(titles))
    hint_line = ""
    if hint_order is not None:
        ranked = ", ".join(label(i) for i in hint_order)
        hint_line = f"Hint: a conventional recommender system ranks them {ranked}.\n"
    return (
        f"\nRank these {n} candidate {domain.plural} from the one the user would like most "
        f"to the one they would like least:\n{lines}{hint_line}"
        f"Answer with all {n} {domain.plural}, best first, one per line, each written as its "
        "letter, a period and its title."
    )


def listwise_answer(titles: Sequence[str], order: Sequence[int]) -> str:
    """The listwise completion: ``"<letter>. <title>"`` lines in ``order`` (indices shown)."""
    return "\n".join(f"{label(i)}. {titles[i]}" for i in order)


def messages(system: str, prefix: str, suffix: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": prefix + suffix}]
