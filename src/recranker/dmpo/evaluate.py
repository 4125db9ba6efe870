"""Preference evaluation as in the DMPO paper (§4.5): AUC of the answers' likelihoods.

A test record holds pairwise prompts x with two answers, chosen "<pos, neg>" (label 1) and
rejected "<neg, pos>" (label 0). A model scores an answer by the **average of its tokens'
probabilities** given x (the paper's score, ``mean_prob``) or, as an option, by the average of their
log-probabilities (``mean_logprob``, a geometric mean; it ranks answers differently). AUC is
sklearn's ``roc_auc_score`` over every answer pooled, with a 95% bootstrap interval over the test
records (the same draws for every model, so differences between models are paired); pairwise
accuracy is the share of pairs whose chosen answer scores above its rejected one. Explainability:
the per-token probabilities of the answers before and after DMPO, saved as JSON and plotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recranker.errors import RecrankerError

SCORES = ("mean_prob", "mean_logprob")


def answer_score(token_logprobs, method: str = "mean_prob") -> float:
    """One answer's score from its tokens' log-probabilities (see module doc)."""
    lp = np.asarray(token_logprobs, dtype=np.float64)
    if method == "mean_prob":
        return float(np.exp(lp).mean())
    if method == "mean_logprob":
        return float(lp.mean())
    raise RecrankerError(f"unknown answer score '{method}' (known: {', '.join(SCORES)})")


@dataclass(frozen=True)
class EncodedAnswer:
    ids: list[int]  # prompt + answer tokens (possibly left-truncated)
    n_answer: int  # trailing tokens that form the answer
    truncated: bool


def encode_answer(tokenizer, prompt: Sequence[dict], answer: str, max_length: int) -> EncodedAnswer:
    """Chat-template ``prompt`` + assistant ``answer``; the answer starts where the prompt ends.

    Like trl, the split is the common token prefix of the prompt alone (with the generation
    prompt) and the full conversation. Over-long inputs lose the *start* of the prompt so the
    answer is always scored whole.
    """
    from trl.data_utils import common_prefix_length

    def ids(messages, **kw) -> list[int]:
        out = tokenizer.apply_chat_template(list(messages), tokenize=True, return_dict=True, **kw)
        return list(out["input_ids"])

    prompt_ids = ids(prompt, add_generation_prompt=True)
    full = ids(list(prompt) + [{"role": "assistant", "content": answer}])
    n_prompt = common_prefix_length(prompt_ids, full)
    n_answer = len(full) - n_prompt
    if n_answer >= max_length:
        raise RecrankerError(f"answer {answer[:40]!r} has {n_answer} tokens, more than max_length={max_length}")
    truncated = len(full) > max_length
    return EncodedAnswer(full[-max_length:] if truncated else full, n_answer, truncated)


def answer_token_logprobs(model, encoded: Sequence[EncodedAnswer], batch_size: int,
                          progress: bool = False) -> list[np.ndarray]:
    """Per-token log-probabilities of each answer's tokens (one float64 array per answer).

    The candidates of one prompt share it token for token, so the prompt's KV cache is computed
    once and only the answers run per candidate (the ranking scorer, which also keeps logits for
    the answer positions only). ``progress``: a bar with an ETA (a line a minute in a log).
    """
    from recranker.llm.scoring import PrefixCachedScorer, ScoreRequest

    requests = [ScoreRequest(tokens=tuple(e.ids), n_scored=e.n_answer, group=tuple(e.ids[: -e.n_answer]))
                for e in encoded]
    scorer = PrefixCachedScorer(model, batch_size=batch_size, progress=progress)
    return [r.token_logprobs for r in scorer.score(requests)]


def candidates(record: dict[str, Any], where: str) -> list[tuple[list[dict], list[str], list[int]]]:
    """Per pair of a record (a test record is usually one pair): (prompt, [chosen, rejected], [1, 0])."""
    from recranker.dmpo.train import pairs_of

    n = len(record.get("pairs") or []) or 1
    return [(p["prompt"], [p["chosen"], p["rejected"]], [1, 0]) for p in pairs_of(record, n, where)]


def score_records(model, tokenizer, records: Sequence[dict], batch_size: int = 4,
                  max_length: int = 512) -> list[dict[str, Any]]:
    """For every record: its answers, labels, pair index, scores (both methods), token counts."""
    encoded, meta = [], []
    for i, rec in enumerate(records):
        answers, labels, pair = [], [], []
        for j, (prompt, ans, lab) in enumerate(candidates(rec, f"preferences[{i}] (id={rec.get('id', '?')})")):
            for a in ans:
                encoded.append(encode_answer(tokenizer, prompt, a, max_length))
            answers += ans
            labels += lab
            pair += [j] * len(ans)
        meta.append((answers, labels, pair))
    token_lp = answer_token_logprobs(model, encoded, batch_size, progress=True)  # minutes per model on a CPU
    scored = []
    pos = 0
    for i, (answers, labels, pair) in enumerate(meta):
        lps = token_lp[pos : pos + len(answers)]
        scored.append({
            "index": i,
            "answers": answers,
            "labels": labels,
            "pair": pair,
            "scores": {m: [answer_score(x, m) for x in lps] for m in SCORES},
            "n_tokens": [int(x.size) for x in lps],
            "truncated": any(encoded[pos + j].truncated for j in range(len(answers))),
        })
        pos += len(answers)
    return scored


def _scores(s: dict, method: str) -> np.ndarray:
    sc = s["scores"]
    return np.asarray(sc[method] if isinstance(sc, dict) else sc, dtype=np.float64)


def pooled_auc(scored: Sequence[dict[str, Any]], method: str = "mean_prob", rows=None) -> float:
    """sklearn ROC-AUC over the answers of ``scored`` (or of the records at indices ``rows``)."""
    from sklearn.metrics import roc_auc_score

    rows = range(len(scored)) if rows is None else rows
    labels = np.concatenate([scored[r]["labels"] for r in rows])
    scores = np.concatenate([_scores(scored[r], method) for r in rows])
    return float(roc_auc_score(labels, scores))


def bootstrap_draws(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] record indices drawn with replacement (shared by every model: paired)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def auc_interval(scored: Sequence[dict], draws: np.ndarray, method: str = "mean_prob") -> list[float]:
    """95% percentile bootstrap interval of the pooled AUC."""
    values = [pooled_auc(scored, method, d) for d in draws]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def paired_difference(a: Sequence[dict], b: Sequence[dict], draws: np.ndarray,
                      method: str = "mean_prob") -> dict[str, Any]:
    """AUC(a) − AUC(b) on the same records, with its 95% paired bootstrap interval."""
    diffs = [pooled_auc(a, method, d) - pooled_auc(b, method, d) for d in draws]
    return {"diff": pooled_auc(a, method) - pooled_auc(b, method),
            "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]}


def preference_metrics(scored: Sequence[dict[str, Any]], method: str = "mean_prob",
                       draws: np.ndarray | None = None) -> dict[str, Any]:
    """Pooled AUC (sklearn; with a 95% bootstrap interval when ``draws`` are given), pairwise
    accuracy (within each pair: positive strictly above negative) and top-1 accuracy per record."""
    if not scored:
        raise RecrankerError("preference evaluation: no samples")
    pairs, top1 = [], []
    for s in scored:
        sc, lb = _scores(s, method), np.asarray(s["labels"])
        grp = np.asarray(s.get("pair", [0] * len(lb)))
        for g in np.unique(grp):
            pos, neg = sc[(lb == 1) & (grp == g)], sc[(lb == 0) & (grp == g)]
            pairs.append((pos[:, None] > neg[None, :]).astype(float).ravel())
        top1.append(float(sc[lb == 1].min() > sc[lb == 0].max()))
    out = {
        "auc": pooled_auc(scored, method),
        "score": method,
        "pairwise_accuracy": float(np.concatenate(pairs).mean()),
        "top1_accuracy": float(np.mean(top1)),
        "n_samples": len(scored),
        "n_candidates": int(sum(len(s["labels"]) for s in scored)),
        "truncated_samples": int(sum(s.get("truncated", False) for s in scored)),
    }
    if draws is not None:
        out["auc_ci95"] = auc_interval(scored, draws, method)
    return out


def explain(models: dict[str, Any], tokenizer, records: Sequence[dict], max_length: int = 512) -> list[dict]:
    """Per-token conditional probabilities of each answer under each model (e.g. sft vs dmpo)."""
    out = []
    for i, rec in enumerate(records):
        prompt, answers, labels = candidates(rec, f"preferences[{i}]")[0]
        enc = [encode_answer(tokenizer, prompt, a, max_length) for a in answers]
        per_model = {name: answer_token_logprobs(m, enc, batch_size=len(enc)) for name, m in models.items()}
        cands = []
        for j, (a, lab) in enumerate(zip(answers, labels)):
            toks = enc[j].ids[-enc[j].n_answer :]
            cands.append({
                "answer": a,
                "label": lab,
                "tokens": [tokenizer.decode([t]) for t in toks],
                "prob": {name: np.exp(lp[j]).round(6).tolist() for name, lp in per_model.items()},
                "mean_prob": {name: answer_score(lp[j], "mean_prob") for name, lp in per_model.items()},
            })
        out.append({"index": i, "candidates": cands})
    return out


def plot_explanations(explanations: Sequence[dict], path: str | Path) -> None:
    """One panel per sample: per-token probability of the positive and negatives, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(explanations))
    fig, axes = plt.subplots(n, 1, figsize=(9, 3.2 * n), squeeze=False)
    styles = ["--", "-", ":", "-."]  # one per model (e.g. before = dashed, after = solid)
    for ax, ex in zip(axes[:, 0], explanations):
        for c, cand in enumerate(ex["candidates"]):
            kind = "pos" if cand["label"] == 1 else "neg"
            for m, (name, probs) in enumerate(cand["prob"].items()):
                ax.plot(range(len(probs)), np.clip(probs, 1e-8, 1), styles[m % len(styles)], color=f"C{c}",
                        marker="o" if kind == "pos" else "x", ms=4, label=f"{name} {kind}: {cand['answer'][:24]}")
        pos = next(cd for cd in ex["candidates"] if cd["label"] == 1)
        ax.set_xticks(range(len(pos["tokens"])), [repr(t)[1:-1][:12] for t in pos["tokens"]], fontsize=7)
        ax.set_yscale("log")
        ax.set_title(f"sample {ex['index']}: p(token | prompt, previous tokens); x labels = positive's tokens")
        ax.set_ylabel("probability")
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
