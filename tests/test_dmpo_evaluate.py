"""Preference evaluation: the two answer scores by hand, sklearn AUC, bootstrap intervals,
explanations; the DMPO branch's stages end to end."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recranker.dmpo.evaluate import (
    answer_score,
    auc_interval,
    bootstrap_draws,
    encode_answer,
    explain,
    paired_difference,
    plot_explanations,
    preference_metrics,
    score_records,
)
from recranker.llm.model import load_model, load_tokenizer


def prefs(n: int, k: int = 1) -> list[dict]:
    pairs = [("Yes, The Matrix (1999)", "Toy Story"), ("Heat (1995)", "No")][:k]
    return [{"id": f"t{i}", "pairs": [{"prompt": [{"role": "user", "content": f"User liked film {i}; {c} or {r}?"}],
                                       "chosen": f"{c}, {r}", "rejected": f"{r}, {c}"} for c, r in pairs],
             "meta": {}} for i in range(n)]


def test_answer_scores_by_hand():
    # token probabilities .9 and .1 vs .5 and .5: the paper's mean probability ties them (.5 = .5)...
    a, b = np.log([0.9, 0.1]), np.log([0.5, 0.5])
    assert answer_score(a, "mean_prob") == pytest.approx(0.5)
    assert answer_score(b, "mean_prob") == pytest.approx(0.5)
    # ...the geometric mean does not: exp(mean log p) = sqrt(.09) = .3 < .5
    assert answer_score(a, "mean_logprob") == pytest.approx(np.log(0.3))
    assert answer_score(b, "mean_logprob") == pytest.approx(np.log(0.5))
    # and they can rank two answers in opposite orders: (.99, .02) vs (.3, .3)
    c, d = np.log([0.99, 0.02]), np.log([0.3, 0.3])
    assert answer_score(c, "mean_prob") > answer_score(d, "mean_prob")  # .505 > .3
    assert answer_score(c, "mean_logprob") < answer_score(d, "mean_logprob")  # log .141 < log .3


def test_metrics_on_known_scores_both_methods():
    def lp(*p):
        return list(np.log(p))

    # per record: the chosen and rejected answers' token probabilities
    rows = [([0.99, 0.02], [0.3, 0.3]), ([0.8, 0.8], [0.4, 0.5]), ([0.2, 0.2], [0.6, 0.5])]
    scored = [{"labels": [1, 0], "pair": [0, 0],
               "scores": {m: [answer_score(lp(*c), m), answer_score(lp(*r), m)] for m in ("mean_prob", "mean_logprob")}}
              for c, r in rows]
    mp, ml = preference_metrics(scored, "mean_prob"), preference_metrics(scored, "mean_logprob")
    # mean_prob: positives {.505, .8, .2} vs negatives {.3, .45, .55}: 2 + 3 + 0 = 5 of 9
    assert mp["auc"] == pytest.approx(5 / 9) and mp["pairwise_accuracy"] == pytest.approx(2 / 3)
    # mean_logprob (geometric): positives {.141, .8, .2} vs {.3, .447, .548}: 0 + 3 + 0 = 3 of 9
    assert ml["auc"] == pytest.approx(3 / 9) and ml["pairwise_accuracy"] == pytest.approx(1 / 3)
    from sklearn.metrics import roc_auc_score

    assert mp["auc"] == roc_auc_score([1, 0] * 3, [s for x in scored for s in x["scores"]["mean_prob"]])


def test_bootstrap_intervals_are_paired_and_contain_the_estimate():
    rng = np.random.default_rng(0)
    good = [{"labels": [1, 0], "scores": [float(rng.normal(1)), float(rng.normal(0))]} for _ in range(200)]
    bad = [{"labels": [1, 0], "scores": [float(rng.normal(0)), float(rng.normal(0))]} for _ in range(200)]
    draws = bootstrap_draws(200, 300, seed=1)
    m = preference_metrics(good, draws=draws)
    lo, hi = m["auc_ci95"]
    assert lo < m["auc"] < hi and hi - lo < 0.2
    assert auc_interval(good, draws) == [lo, hi]  # same draws, same interval
    assert paired_difference(good, bad, draws)["ci95"][0] > 0  # better than chance-level scores
    same = paired_difference(good, good, draws)
    assert same["diff"] == 0 and same["ci95"] == [0, 0]


def test_scores_are_the_answer_tokens_probabilities(tiny_base):
    tok = load_tokenizer(str(tiny_base))
    model = load_model(str(tiny_base))
    recs = prefs(3, k=2)
    scored = score_records(model, tok, recs, batch_size=2, max_length=128)
    ref = load_model(str(tiny_base))
    for rec, s in zip(recs, scored):
        assert s["labels"] == [1, 0, 1, 0] and s["pair"] == [0, 0, 1, 1]
        for j, (answer, n) in enumerate(zip(s["answers"], s["n_tokens"])):
            enc = encode_answer(tok, rec["pairs"][j // 2]["prompt"], answer, 128)
            ids = torch.tensor([enc.ids])
            with torch.no_grad():
                logp = ref(ids).logits.log_softmax(-1)[0]
            L = len(enc.ids)
            tok_lp = torch.stack([logp[t - 1, enc.ids[t]] for t in range(L - enc.n_answer, L)]).double()
            assert n == enc.n_answer
            assert s["scores"]["mean_prob"][j] == pytest.approx(float(tok_lp.exp().mean()), abs=1e-4)
            assert s["scores"]["mean_logprob"][j] == pytest.approx(float(tok_lp.mean()), abs=1e-4)
    enc = encode_answer(tok, recs[0]["pairs"][0]["prompt"], "Yes, The Matrix (1999)", 128)
    assert "The Matrix" in tok.decode(enc.ids[-enc.n_answer:])


def test_long_prompts_lose_their_start_not_the_answer(tiny_base):
    tok = load_tokenizer(str(tiny_base))
    long = [{"role": "user", "content": "film " * 300}]
    enc = encode_answer(tok, long, "Yes", 64)
    assert enc.truncated and len(enc.ids) == 64 and tok.decode(enc.ids[-enc.n_answer:]).startswith("Yes")


def test_explanations_json_and_png(tiny_base, tmp_path):
    tok = load_tokenizer(str(tiny_base))
    model = load_model(str(tiny_base))
    ex = explain({"before": model, "after": model}, tok, prefs(2), max_length=128)
    cand = ex[0]["candidates"][0]
    assert cand["label"] == 1 and len(cand["tokens"]) == len(cand["prob"]["before"])
    assert all(0 < p <= 1 for p in cand["prob"]["after"])
    json.dumps(ex)
    plot_explanations(ex, tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


PARAMS = """
run:
  datasets: [toy, other]
datasets:
  toy: {format: ml-100k}
  other: {format: ml-100k}
llm:
  base_model: tiny-random
  dmpo_sft: {max_steps: 3, save_steps: 2, batch_size: 2, max_length: 128}
  dmpo: {datasets: [toy], k: 2, max_steps: 3, lr: 0.01, max_length: 128}
  pref_eval: {max_samples: 4, explain_samples: 1, max_length: 128, bootstrap: 50}
"""


def _write_inputs(root: Path) -> None:
    from recranker.dmpo.samples import sft_rows

    for ds in ("toy", "other"):
        pref = root / "data" / "preferences" / ds
        pref.mkdir(parents=True)
        (pref / "pref_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prefs(4, k=2)))
        for name in ("pref_valid.jsonl", "pref_test.jsonl"):
            (pref / name).write_text("".join(json.dumps(r) + "\n" for r in prefs(4)))
        (pref / "sft_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_rows(prefs(4, k=2))))
    (root / "params.yaml").write_text(PARAMS)


@pytest.mark.slow
def test_llm_stages_end_to_end(tmp_path):
    """base-model (tiny-random) → dmpo-sft → dmpo → pref-eval, as DVC would run them (no RecRanker sft)."""
    _write_inputs(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RECRANKER_PARAMS": "params.yaml"}
    code = ("import sys; from stages.base_model import base_model; from stages.dmpo_sft import dmpo_sft; "
            "from stages.dmpo import dmpo; from stages.pref_eval import pref_eval; "
            "[f() for f in (base_model, dmpo_sft, dmpo, pref_eval)]")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "metrics" / "pref_eval.json").read_text())
    assert m["toy"]["domain"] == "in-domain" and m["other"]["domain"] == "cross-domain"
    assert set(m["toy"]) == {"domain", "base", "sft", "dmpo", "differences"}
    assert m["toy"]["dmpo"]["score"] == "mean_prob" and len(m["toy"]["dmpo"]["auc_ci95"]) == 2
    assert json.loads((tmp_path / "metrics" / "dmpo_sft.json").read_text())["steps"] == 3
    assert not (tmp_path / "models" / "llm" / "sft").exists()
    dm = json.loads((tmp_path / "metrics" / "dmpo.json").read_text())
    assert dm["first_train_loss"] == pytest.approx(0.693147, abs=1e-5)
    for f in ("dmpo_sft_loss.csv", "dmpo_loss.csv", "pref_explain.json", "pref_explain.png"):
        assert (tmp_path / "metrics" / f).exists()
    assert (tmp_path / "models" / "llm" / "dmpo" / "adapter_model.safetensors").exists()
    assert not any((tmp_path / "models" / "llm" / ".ckpt").glob("*/checkpoint-*"))
