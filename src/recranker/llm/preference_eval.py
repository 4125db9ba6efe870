"""Preference evaluation as in the DMPO paper: AUC of candidate answers' log-likelihoods.

Each test sample has a prompt, one positive answer and several negatives. A model scores every
candidate by its *average per-token* log-probability given the prompt (so long titles are not
penalised for their length); AUC is computed over all (positive, negative) candidates pooled,
beside the pairwise accuracy (positive above a negative of the same prompt) and the top-1
accuracy (positive above all its negatives). Explainability: the per-token conditional
probabilities of the candidates before and after DMPO, saved as JSON and plotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recranker.errors import RecrankerError


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


def answer_token_logprobs(model, encoded: Sequence[EncodedAnswer], batch_size: int) -> list[np.ndarray]:
    """Per-token log-probabilities of each answer's tokens (one float64 array per answer).

    The candidates of one prompt share it token for token, so the prompt's KV cache is computed
    once and only the answers run per candidate (the ranking scorer, which also keeps logits for
    the answer positions only).
    """
    from recranker.llm.scoring import PrefixCachedScorer, ScoreRequest

    requests = [ScoreRequest(tokens=tuple(e.ids), n_scored=e.n_answer, group=tuple(e.ids[: -e.n_answer]))
                for e in encoded]
    scorer = PrefixCachedScorer(model, batch_size=batch_size)
    return [r.token_logprobs for r in scorer.score(requests)]


def candidates(record: dict[str, Any], where: str) -> tuple[list[dict], list[str], list[int]]:
    """(prompt messages, answers, labels) of a preference record: the positive first, label 1."""
    from recranker.llm.dmpo import to_preference

    ex = to_preference(record, k=1, where=where)
    answers = [record["chosen"], *record["rejected"]]
    return ex["prompt"], answers, [1] + [0] * len(record["rejected"])


def score_records(model, tokenizer, records: Sequence[dict], batch_size: int = 4,
                  max_length: int = 384) -> list[dict[str, Any]]:
    """For every record: candidate answers, labels, mean per-token log-prob scores, token counts."""
    encoded, owner = [], []
    meta = []
    for i, rec in enumerate(records):
        prompt, answers, labels = candidates(rec, f"preferences[{i}]")
        for a in answers:
            encoded.append(encode_answer(tokenizer, prompt, a, max_length))
            owner.append(i)
        meta.append((answers, labels))
    token_lp = answer_token_logprobs(model, encoded, batch_size)
    scored = []
    pos = 0
    for i, (answers, labels) in enumerate(meta):
        lps = token_lp[pos : pos + len(answers)]
        scored.append({
            "index": i,
            "answers": answers,
            "labels": labels,
            "scores": [float(x.mean()) for x in lps],
            "n_tokens": [int(x.size) for x in lps],
            "truncated": any(encoded[pos + j].truncated for j in range(len(answers))),
        })
        pos += len(answers)
    return scored


def preference_metrics(scored: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Pooled AUC (sklearn), pairwise accuracy and top-1 accuracy of the positives."""
    from recranker.metrics import auc

    if not scored:
        raise RecrankerError("preference evaluation: no samples")
    labels = np.concatenate([s["labels"] for s in scored])
    scores = np.concatenate([s["scores"] for s in scored])
    pairs, top1 = [], []
    for s in scored:
        sc, lb = np.asarray(s["scores"]), np.asarray(s["labels"])
        pos, neg = sc[lb == 1], sc[lb == 0]
        wins = (pos[:, None] > neg[None, :]).astype(float).ravel()
        pairs.append(wins)
        top1.append(float(pos.min() > neg.max()))
    return {
        "auc": auc(labels, scores),
        "pairwise_accuracy": float(np.concatenate(pairs).mean()),
        "top1_accuracy": float(np.mean(top1)),
        "n_samples": len(scored),
        "n_candidates": int(labels.size),
        "truncated_samples": int(sum(s["truncated"] for s in scored)),
    }


def explain(models: dict[str, Any], tokenizer, records: Sequence[dict], max_length: int = 384) -> list[dict]:
    """Per-token conditional probabilities of each candidate under each model (e.g. sft vs dmpo)."""
    out = []
    for i, rec in enumerate(records):
        prompt, answers, labels = candidates(rec, f"preferences[{i}]")
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
                "mean_logprob": {name: float(lp[j].mean()) for name, lp in per_model.items()},
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
