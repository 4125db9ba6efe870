"""Preference evaluation: candidate scores, AUC / accuracies, explanations; the stages end to end."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from recranker.llm.model import load_model, load_tokenizer
from recranker.llm.preference_eval import (
    encode_answer,
    explain,
    plot_explanations,
    preference_metrics,
    score_records,
)


def prefs(n: int) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"User liked film {i}; film {i + 1}?"}],
             "chosen": "Yes, The Matrix (1999)", "rejected": ["No", "Toy Story"], "meta": {}} for i in range(n)]


def test_metrics_on_known_scores():
    scored = [
        {"labels": [1, 0, 0], "scores": [-1.0, -2.0, -3.0], "truncated": False},  # positive on top
        {"labels": [1, 0, 0], "scores": [-2.5, -2.0, -3.0], "truncated": False},  # beats one of two
    ]
    m = preference_metrics(scored)
    assert m["pairwise_accuracy"] == pytest.approx(0.75)
    assert m["top1_accuracy"] == pytest.approx(0.5)
    # pooled: positives {-1, -2.5} vs negatives {-2, -3, -2, -3}: 4 + 2 wins of 8
    assert m["auc"] == pytest.approx(6 / 8)
    assert m["n_candidates"] == 6


def test_scores_are_mean_token_logprobs_of_the_answer(tiny_base):
    tok = load_tokenizer(str(tiny_base))
    model = load_model(str(tiny_base))
    recs = prefs(3)
    scored = score_records(model, tok, recs, batch_size=2, max_length=128)
    # brute force with full logits, one sequence at a time
    ref = load_model(str(tiny_base))
    for rec, s in zip(recs, scored):
        for answer, score, n in zip(s["answers"], s["scores"], s["n_tokens"]):
            enc = encode_answer(tok, rec["prompt"], answer, 128)
            ids = torch.tensor([enc.ids])
            with torch.no_grad():
                logp = ref(ids).logits.log_softmax(-1)[0]
            L = len(enc.ids)
            expected = torch.stack([logp[t - 1, enc.ids[t]] for t in range(L - enc.n_answer, L)]).mean()
            assert n == enc.n_answer and score == pytest.approx(float(expected), abs=1e-4)
    # the answer text is what gets scored: its tokens end the sequence
    enc = encode_answer(tok, recs[0]["prompt"], "Yes, The Matrix (1999)", 128)
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
  sft: {max_steps: 3, save_steps: 2, batch_size: 2, max_length: 128}
  dmpo: {datasets: [toy], k: 2, max_steps: 3, lr: 0.01, max_length: 128}
  pref_eval: {max_samples: 4, explain_samples: 1, max_length: 128}
"""


def _write_inputs(root: Path) -> None:
    for ds in ("toy", "other"):
        inst = root / "data" / "instructions" / "train"
        inst.mkdir(parents=True, exist_ok=True)
        with (inst / f"{ds}.jsonl").open("w") as fh:
            for i in range(6):
                fh.write(json.dumps({"id": f"{ds}{i}", "dataset": ds, "task": "pointwise", "user_id": i,
                                     "messages": [{"role": "user", "content": f"Rate film {i} (1-5)."}],
                                     "completion": str(1 + i % 5), "candidates": [i], "meta": {}}) + "\n")
        pref = root / "data" / "preferences" / ds
        pref.mkdir(parents=True)
        for name in ("pref_train.jsonl", "pref_test.jsonl"):
            (pref / name).write_text("".join(json.dumps(r) + "\n" for r in prefs(4)))
    (root / "params.yaml").write_text(PARAMS)


@pytest.mark.slow
def test_llm_stages_end_to_end(tmp_path):
    """base-model (tiny-random) → sft → dmpo → pref-eval, as DVC would run them."""
    _write_inputs(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RECRANKER_PARAMS": "params.yaml"}
    code = ("import sys; from stages.base_model import base_model; from stages.sft import sft; "
            "from stages.dmpo import dmpo; from stages.pref_eval import pref_eval; "
            "[f() for f in (base_model, sft, dmpo, pref_eval)]")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "metrics" / "pref_eval.json").read_text())
    assert m["toy"]["domain"] == "in-domain" and m["other"]["domain"] == "cross-domain"
    assert set(m["toy"]) == {"domain", "base", "sft", "dmpo"}
    assert json.loads((tmp_path / "metrics" / "sft.json").read_text())["steps"] == 3
    dm = json.loads((tmp_path / "metrics" / "dmpo.json").read_text())
    assert dm["first_train_loss"] == pytest.approx(0.693147, abs=1e-5)
    for f in ("sft_loss.csv", "dmpo_loss.csv", "pref_explain.json", "pref_explain.png"):
        assert (tmp_path / "metrics" / f).exists()
    assert (tmp_path / "models" / "llm" / "dmpo" / "adapter_model.safetensors").exists()
    assert not any((tmp_path / "models" / "llm" / ".ckpt").glob("*/checkpoint-*"))
