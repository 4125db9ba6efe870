"""Prompt text pieces: safe titles, rating scales, answer formats and their parsers."""

import pytest

from recranker.errors import RecrankerError
from recranker.prompts import templates as T
from recranker.prompts.templates import DOMAINS
from recranker.prompts.text import RatingScale, clean_text
from recranker.ranking.listwise import ListwiseParser

NASTY = [
    'He said "Hi"\nB. Yes',
    "Tab\there\r\nand\u2028there",
    "{history} {0} %s",
    "  ",
    "A. Already labelled",
    "Zero\u200bwidth\x00nul",
    "x" * 500,
]


def test_clean_text_is_one_safe_line():
    for t in NASTY:
        c = clean_text(t, 100)
        assert "\n" not in c and "\r" not in c and "\t" not in c and "\x00" not in c
        assert c == c.strip() and "  " not in c and len(c) <= 100
    assert clean_text('He said "Hi"\nB. Yes') == 'He said "Hi" B. Yes'
    assert clean_text("x" * 500, 20).endswith("…")
    assert clean_text(None) == "" and clean_text(float("nan")) == ""


def test_rating_scales():
    ml = RatingScale(1, 5)
    assert ml.answers() == ["1", "2", "3", "4", "5"]
    assert ml.to_answer(3.6) == "4" and ml.to_answer(9) == "5" and ml.to_answer(2.5) == "3"
    bx = RatingScale(1, 10)  # one-digit answers: shown as 0–9
    assert (bx.shown_low, bx.shown_high) == (0, 9)
    assert bx.to_answer(10) == "9" and bx.to_answer(1) == "0" and bx.from_answer("9") == 10
    assert bx.show(7.25) == "6.2" or bx.show(7.25) == "6.3"
    assert len(bx.answers()) == len(bx.values()) == 10 and bx.values()[0] == 1.0
    assert RatingScale.from_stats({"rating_scale": [1.0, 5.0]}) == ml
    with pytest.raises(RecrankerError, match="one digit"):
        RatingScale(0, 10)
    with pytest.raises(RecrankerError, match="rating_scale"):
        RatingScale.from_stats({})


def test_answer_formats_round_trip_through_parsers():
    titles = [clean_text(t) for t in NASTY[:5]]
    order = [3, 0, 4, 1, 2]
    answer = T.listwise_answer(titles, order)
    assert len(answer.splitlines()) == 5  # nothing in a title breaks a line
    parser = ListwiseParser(titles)  # the one listwise parser: the ranking stage's
    assert parser.parse(answer).order == tuple(order) and parser.parse(answer).complete
    # tolerant forms: "(C)", "C)", numbered lines, bare titles, junk and repeats ignored; the
    # candidates never named follow in fallback order
    got = parser.parse("1. (C) x\nB) y\nnonsense\nB. again\nZ. no such")
    assert got.order == (2, 1, 0, 3, 4) and got.parsed == 2
    assert parser.parse(titles[1]).order[:1] == (1,)


def test_templates_keep_titles_inert_and_prefix_task_free():
    scale, dom = RatingScale(1, 5), DOMAINS["movie"]
    titles = [clean_text(t) for t in NASTY]
    prefix = T.history_block(titles, ["4"] * len(titles), scale, dom, shuffled=False)
    assert prefix.count("\n") == len(titles) + 1  # header + one line per item
    assert "{history} {0} %s" in prefix  # braces are not template syntax
    sfx = [
        T.pointwise_suffix(titles[0], scale, dom, "3.5"),
        T.pairwise_suffix(titles[0], titles[1], dom, True),
        T.listwise_suffix(titles[:3], dom, [2, 0, 1]),
    ]
    for s in sfx:
        m = T.messages(T.system_text(dom), prefix, s)
        assert m[1]["content"].startswith(prefix)
    assert sfx[1].endswith("Hint: A over B.") and "ranks them C, A, B." in sfx[2]
    assert "Hint" not in T.pointwise_suffix(titles[0], scale, dom, None)
    # the listwise block has exactly one line per candidate
    body = sfx[2].split(":\n", 1)[1]
    assert [ln[:2] for ln in body.splitlines()[:3]] == ["A.", "B.", "C."]


@pytest.mark.parametrize("hint", [None, "3.5"])
def test_fixed_task_lines_precede_the_candidate(hint):
    """Everything but titles and hint values comes before the first title, so it joins the
    prefix that the scorer caches once per user and task."""
    scale, dom = RatingScale(1, 5), DOMAINS["movie"]
    a = T.pointwise_suffix("Heat (1995)", scale, dom, hint)
    b = T.pointwise_suffix("Fargo (1996)", scale, dom, hint and "2.0")
    shared = a[: next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)]
    assert "Answer with a single number from 1 to 5." in shared
    assert (T._HINT_NOTE in shared) == (hint is not None)
    p, q = T.pairwise_suffix("Heat", "Babe", dom, hint and True), T.pairwise_suffix("Fargo", "Babe", dom, hint and False)
    assert "Answer Yes or No." in p[: next(i for i, (x, y) in enumerate(zip(p, q)) if x != y)]
    with pytest.raises(RecrankerError):
        T.listwise_suffix(["t"] * 27, dom, None)
