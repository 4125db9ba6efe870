"""The fast scorer equals the plain one: prefix-cached, batched, padded == one full prompt at a time."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recranker.errors import RecrankerError
from recranker.llm.scoring import (
    PrefixCachedScorer,
    ScoreRequest,
    binary_probability,
    encode_chat,
    expected_value,
    label_token_ids,
)


@pytest.fixture(scope="module")
def model(tok):
    from recranker.llm.model import tiny_random_model

    torch.set_num_threads(1)
    m = tiny_random_model(tok, seed=0)
    # Sharpen the random weights so that any position/mask mistake moves the log-probs well
    # beyond the 1e-4 tolerance (checked by the negative control below).
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.mul_(6.0)
    return m


def _prompts(tok, n_users=3, n_cands=5):
    titles = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Se7en (1995)", "Babe (1995)",
              "Up (2009)", "It (2017)"]
    reqs = []
    rating = label_token_ids(tok, ["1", "2", "3", "4", "5"])
    for u in range(n_users):
        history = ", ".join(titles[(u + j) % len(titles)] for j in range(2 + u))
        for c in range(n_cands):
            msgs = [
                {"role": "system", "content": "You are a movie recommender."},
                {"role": "user", "content": f"User {u} watched: {history}.\n"
                 f"How would they rate {titles[c % len(titles)]}{'!' * c}? Answer 1-5."},
            ]
            reqs.append(ScoreRequest(tuple(encode_chat(tok, msgs)), tuple(rating), group=u))
    return reqs


def _reference(model, reqs):
    """One request at a time, whole prompt, no cache, no padding."""
    s = PrefixCachedScorer(model, batch_size=1, use_prefix_cache=False)
    return s.score([ScoreRequest(r.tokens, r.targets, r.n_scored, group=None) for r in reqs])


def test_prefix_cached_equals_full_prompts(tok, model):
    reqs = _prompts(tok)
    ref = _reference(model, reqs)
    fast = PrefixCachedScorer(model, pad_token_id=tok.pad_token_id, batch_size=3, min_prefix=4)
    got = fast.score(reqs)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(a.targets, b.targets, atol=1e-4, rtol=0)
    # The cache was really used: fewer tokens computed than in the prompts.
    assert fast.stats.computed_tokens < fast.stats.prompt_tokens
    # Negative control: different prompts give clearly different answers, so 1e-4 is a real bar.
    spread = np.ptp([r.targets[0] for r in ref])
    assert spread > 1e-2


def test_batched_uncached_equals_reference_with_left_padding(tok, model):
    reqs = _prompts(tok, n_users=2, n_cands=4)
    ref = _reference(model, reqs)
    got = PrefixCachedScorer(model, batch_size=8, use_prefix_cache=False).score(reqs)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(a.targets, b.targets, atol=1e-4, rtol=0)


def test_continuation_logprob_cached_equals_reference(tok, model):
    base = encode_chat(tok, [{"role": "user", "content": "Rank these: Heat, Fargo, Babe."}])
    conts = [tok.encode(t, add_special_tokens=False) for t in ["Heat", "Fargo (1996)", "Babe"]]
    reqs = [ScoreRequest(tuple(base + c), (), len(c), group="u") for c in conts]
    ref = _reference(model, reqs)
    got = PrefixCachedScorer(model, batch_size=2, min_prefix=4).score(reqs)
    for a, b in zip(ref, got):
        assert a.continuation == pytest.approx(b.continuation, abs=1e-4)
        assert a.continuation < 0
    # Direct check of one continuation against a plain forward pass.
    ids = torch.tensor([base + conts[1]])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    n = len(conts[1])
    want = sum(float(lp[len(base) - 1 + j, conts[1][j]]) for j in range(n))
    assert got[1].continuation == pytest.approx(want, abs=1e-4)


def test_next_token_matches_plain_forward(tok, model):
    reqs = _prompts(tok, n_users=1, n_cands=2)
    got = PrefixCachedScorer(model, min_prefix=4).score(reqs)
    ids = torch.tensor([list(reqs[1].tokens)])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0, -1].float(), -1)
    np.testing.assert_allclose(got[1].targets, lp[list(reqs[1].targets)].numpy(), atol=1e-4)


def test_expected_value_and_binary_probability():
    lp = np.log(np.array([0.1, 0.2, 0.3, 0.2, 0.2]) * 0.5)  # mass elsewhere is renormalised away
    assert expected_value(lp, [1, 2, 3, 4, 5]) == pytest.approx(3.2)
    assert expected_value(lp, [1, 2, 3, 4, 5], mode="argmax") == 3.0
    assert binary_probability(np.log([0.3, 0.1])) == pytest.approx(0.75)
    with pytest.raises(RecrankerError):
        expected_value(lp, [1, 2, 3], mode="expected")
    with pytest.raises(RecrankerError):
        expected_value(lp, [1, 2, 3, 4, 5], mode="median")


def test_label_tokens(tok):
    assert len(set(label_token_ids(tok, ["Yes", "No"]))) == 2
    with pytest.raises(RecrankerError, match="10"):
        label_token_ids(tok, ["9", "10"])


def test_bad_request_is_one_line_error(model):
    with pytest.raises(RecrankerError):
        PrefixCachedScorer(model).score([ScoreRequest((1, 2), (), n_scored=2)])


def test_plan_splits_a_group_with_two_prefixes(tok, model):
    from recranker.llm.scoring import plan_prefixes

    a = [ScoreRequest(tuple([5] * 40 + [7, k]), group=0) for k in range(3)]
    b = [ScoreRequest(tuple([6] * 30 + [8, k, k]), group=0) for k in range(4)]
    reqs = a + b
    plan = plan_prefixes(reqs, list(range(len(reqs))), min_prefix=16)
    assert sorted((p, sorted(m)) for p, m in plan) == [(31, [3, 4, 5, 6]), (41, [0, 1, 2])]
    # The cached answers equal the reference ones for mixed-prefix groups too.
    ref = _reference(model, [ScoreRequest(r.tokens, (1, 2, 3)) for r in reqs])
    got = PrefixCachedScorer(model, batch_size=2).score(
        [ScoreRequest(r.tokens, (1, 2, 3), group=0) for r in reqs])
    for x, y in zip(ref, got):
        np.testing.assert_allclose(x.targets, y.targets, atol=1e-4, rtol=0)


def test_plan_never_caches_into_the_scored_continuation():
    from recranker.llm.scoring import plan_prefixes

    reqs = [ScoreRequest(tuple(range(50)), n_scored=10, group=0),
            ScoreRequest(tuple(range(50)) + (99,), n_scored=1, group=0)]
    ((p, members),) = plan_prefixes(reqs, [0, 1], min_prefix=16)
    assert p == 39 and sorted(members) == [0, 1]
