"""DMPO preference data from ratings, and an importer for LLaMA-Factory ranking data.

Labels (DMPO paper): rating > ``positive_above`` (3) is positive, ≤ is negative; only users
with ≥ 5 of each take part. A sample is (history, one positive, k negatives):

* the positive ``p`` is one of the user's positives (the most recent first; further samples
  of the same user use earlier positives); the history is the ≤ 40 interactions *before* ``p``
  in time (titles only, oldest first); the k negatives are drawn from the user's negatives
  outside that history;
* prompt: the history, then the k+1 candidates in random order, "rank the candidates" — for
  k = 1 exactly the pairwise "rank the two candidates" prompt of the DMPO paper;
* ``chosen`` = the candidates as a ranking, positive first, then the negatives in shown order,
  joined by ", " (``"<pos>, <neg>"`` for k = 1);
* ``rejected[j]`` = ``chosen`` with the positive and negative j swapped, i.e. a ranking that puts
  negative j first (``"<neg>, <pos>"`` for k = 1). Every response is a full ranking of exactly
  the shown candidates, and chosen and rejected[j] differ only in the (pos, neg_j) order.
  Titles may contain commas; responses are scored by log-probability, never parsed.

Splits (no item-level leakage between the train/valid/test samples of one user): eligible users
are shuffled and split *by user* — taken in that order, users give one train sample each until
there are ``n_train``, then one valid sample each until ``n_valid`` (a user without a usable
sample is skipped), and all remaining users the ``n_test`` test samples (round-robin, one
positive per user per round). A user therefore appears in one split only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recranker.errors import DataFormatError, RecrankerError

from .prompts.templates import Domain, system_text
from .prompts.text import clean_text


@dataclass(frozen=True)
class PreferenceConfig:
    dataset: str
    domain: Domain
    positive_above: float = 3.0
    min_positives: int = 5
    min_negatives: int = 5
    history_len: int = 40
    min_history: int = 1
    k_negatives: int = 3
    n_train: int = 100
    n_valid: int = 100
    n_test: int = 1000
    max_title_chars: int = 100


def eligible_users(interactions: pd.DataFrame, cfg: PreferenceConfig) -> np.ndarray:
    """Users with ≥ min_positives positives and ≥ min_negatives negatives (sorted ids)."""
    pos = interactions["rating"].to_numpy() > cfg.positive_above
    g = pd.DataFrame({"u": interactions["user_id"].to_numpy(), "pos": pos}).groupby("u")["pos"]
    n_pos, n_all = g.sum(), g.size()
    ok = (n_pos >= cfg.min_positives) & ((n_all - n_pos) >= cfg.min_negatives)
    return np.sort(ok.index[ok.to_numpy()].to_numpy(np.int64))


def _prompt(history: Sequence[str], cands: Sequence[str], cfg: PreferenceConfig) -> list[dict]:
    d = cfg.domain
    n = len(cands)
    what = "two candidate" if n == 2 else f"{n} candidate"
    lines = "".join(f"- {t}\n" for t in history)
    shown = "".join(f"- {t}\n" for t in cands)
    user = (
        f"The user has interacted with these {d.plural} (oldest first):\n{lines}"
        f"\nRank the {what} {d.plural} by how much the user would like them, best first:\n{shown}"
        "Answer with the titles in that order, separated by commas."
    )
    return [{"role": "system", "content": system_text(d)}, {"role": "user", "content": user}]


def _samples_of_user(df_u: pd.DataFrame, cfg, titles, rng, n_max: int) -> list[dict]:
    """Up to ``n_max`` samples of one user (chronological rows), most recent positive first."""
    items = df_u["item_id"].to_numpy(np.int64)
    positive = df_u["rating"].to_numpy() > cfg.positive_above
    out = []
    for pos_at in np.flatnonzero(positive)[::-1]:
        if len(out) == n_max:
            break
        hist = items[max(0, pos_at - cfg.history_len) : pos_at]
        if len(hist) < cfg.min_history:
            continue
        neg_pool = np.setdiff1d(items[~positive], np.append(hist, items[pos_at]))
        if len(neg_pool) < cfg.k_negatives:
            continue
        negs = rng.choice(neg_pool, size=cfg.k_negatives, replace=False)
        shown = [int(items[pos_at]), *map(int, negs)]
        order = rng.permutation(len(shown))
        shown = [shown[i] for i in order]
        neg_shown = [c for c in shown if c != int(items[pos_at])]
        t = [titles[c] for c in shown]
        pos_t = titles[int(items[pos_at])]
        chosen_ids = [int(items[pos_at]), *neg_shown]
        rejected = []
        for j in range(len(neg_shown)):
            r = list(chosen_ids)
            r[0], r[1 + j] = r[1 + j], r[0]
            rejected.append(", ".join(titles[c] for c in r))
        out.append({
            "prompt": _prompt([titles[i] for i in hist], t, cfg),
            "chosen": ", ".join(titles[c] for c in chosen_ids),
            "rejected": rejected,
            "candidates": shown,
            "meta": {"positive": int(items[pos_at]), "negatives": neg_shown,
                     "history": [int(i) for i in hist], "positive_title": pos_t},
        })  # fmt: skip
    return out


def build_preferences(
    interactions: pd.DataFrame, items: pd.DataFrame, cfg: PreferenceConfig, seed: int
) -> dict[str, list[dict]]:
    """``{"train": [...], "valid": [...], "test": [...]}`` preference rows (see module doc)."""
    df = interactions[["user_id", "item_id", "rating", "timestamp"]]
    df = df.iloc[np.lexsort((df["timestamp"].to_numpy(), df["user_id"].to_numpy()))]
    n_items = int(max(items["item_id"].max(), df["item_id"].max())) + 1
    titles = [f"Item {i}" for i in range(n_items)]
    for i, t in zip(items["item_id"].tolist(), items["title"].tolist()):
        titles[i] = clean_text(t, cfg.max_title_chars) or f"Item {i}"

    users = eligible_users(df, cfg)
    need = cfg.n_train + cfg.n_valid + (1 if cfg.n_test else 0)
    if len(users) < need:
        raise RecrankerError(
            f"preferences: {len(users)} eligible users, need ≥ {need} "
            "(preferences.n_train + n_valid + 1 test user); lower them or the thresholds"
        )
    order = [int(u) for u in np.random.default_rng(seed).permutation(users)]
    by_user = {int(u): g for u, g in df.groupby("user_id", sort=True)}

    def samples(u: int, n_max: int) -> list[dict]:
        urng = np.random.default_rng([seed & 0xFFFFFFFF, 7, u])  # per user: order-independent
        return _samples_of_user(by_user[u], cfg, titles, urng, n_max)

    def row(split: str, u: int, j: int, s: dict) -> dict:
        return {"id": f"{cfg.dataset}/dmpo/{split}/u{u}/{j}", "dataset": cfg.dataset, "user_id": u,
                **s, "meta": {**s["meta"], "split": split}}  # fmt: skip

    out: dict[str, list[dict]] = {}
    pos = 0
    for split, target in (("train", cfg.n_train), ("valid", cfg.n_valid)):
        rows: list[dict] = []
        while len(rows) < target and pos < len(order):  # users without a sample are skipped
            u = order[pos]
            pos += 1
            rows += [row(split, u, 0, s) for s in samples(u, 1)]
        out[split] = rows
    rest = order[pos:]
    if cfg.n_test and not rest:
        raise RecrankerError("preferences: no eligible users left for the test split")
    per_user = -(-cfg.n_test // max(len(rest), 1))
    cand = {u: samples(u, per_user) for u in rest}
    rows = []
    for rnd in range(per_user):  # round-robin: every user's latest positive first
        for u in rest:
            if len(rows) < cfg.n_test and rnd < len(cand[u]):
                rows.append(row("test", u, rnd, cand[u][rnd]))
    out["test"] = rows
    return out


def sft_rows(pref_rows: Sequence[dict]) -> list[dict]:
    """SFT warm-up rows (same schema as instruction training rows; completion = chosen)."""
    return [
        {"id": r["id"], "dataset": r.get("dataset", ""), "task": "dmpo", "user_id": r.get("user_id"),
         "messages": r["prompt"], "completion": r["chosen"], "candidates": r.get("candidates", []),
         "meta": r.get("meta", {})}
        for r in pref_rows
    ]  # fmt: skip


def preference_stats(splits: dict[str, list[dict]]) -> dict:
    return {
        split: {
            "samples": len(rows),
            "users": len({r["user_id"] for r in rows}),
            "k_negatives": sorted({len(r["rejected"]) for r in rows}),
            "mean_history": float(np.mean([len(r["meta"]["history"]) for r in rows])) if rows else 0.0,
        }
        for split, rows in splits.items()
    }


# ----------------------------------------------------------------------------- LLaMA-Factory


def _text(entry: dict, key: str, path, i: int, required: bool = True) -> str:
    v = entry.get(key, "" if not required else None)
    if v is None or not isinstance(v, str):
        raise DataFormatError(path, None, f"entry {i}: '{key}' must be a string")
    return v


def import_llamafactory(path: str | Path) -> list[dict]:
    """LLaMA-Factory pairwise ranking data → preference rows (same schema as ours).

    Accepts a JSON list (or JSON Lines) of objects with ``instruction``, optional ``input``,
    optional ``system``, optional ``history`` ([[user, assistant], ...]) and either
    ``output: [chosen, rejected, ...]`` or ``chosen`` + ``rejected`` (string or list).
    The user turn is ``instruction`` followed by a newline and ``input`` when present.
    """
    path = Path(path)
    if not path.is_file():
        raise RecrankerError(f"{path}: not found" if not path.exists() else f"{path}: not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(path, line, "not UTF-8") from None
    lines: list[int | None]  # the line of each entry (JSON Lines), None inside one JSON document
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("["):  # a JSON list: the parser's own error position
            raise DataFormatError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
        data, lines = [], []
        for n, ln in enumerate(text.splitlines(), 1):
            if not ln.strip():
                continue
            try:
                data.append(json.loads(ln))
            except json.JSONDecodeError as line_exc:
                raise DataFormatError(path, n, f"invalid JSON ({line_exc.msg})") from None
            lines.append(n)
    else:
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise DataFormatError(path, None, "expected a JSON list of objects")
        lines = [None] * len(data)
    if not data:
        raise DataFormatError(path, None, "no preference entries (empty file or empty list)")
    rows = []
    for i, e in enumerate(data):
        if lines[i] is not None:  # JSON Lines: name the line, as the user's editor numbers it
            path_i = f"{path}:{lines[i]}"
            if not isinstance(e, dict):
                raise RecrankerError(f"{path_i}: expected an object")
            try:
                rows.append(_import_entry(e, Path(path), i))
            except DataFormatError as exc:
                raise RecrankerError(f"{path_i}: {exc.problem}") from None
            continue
        if not isinstance(e, dict):
            raise DataFormatError(path, None, f"entry {i}: expected an object")
        rows.append(_import_entry(e, path, i))
    return rows


def _import_entry(e: dict, path: Path, i: int) -> dict:
    """One LLaMA-Factory entry → one preference row (errors name the entry)."""
    instruction = _text(e, "instruction", path, i)
    inp = _text(e, "input", path, i, required=False)
    if "output" in e:
        out = e["output"]
        if not (isinstance(out, list) and len(out) >= 2 and all(isinstance(o, str) for o in out)):
            raise DataFormatError(path, None, f"entry {i}: 'output' must be [chosen, rejected, ...] strings")
        chosen, rejected = out[0], out[1:]
    elif "chosen" in e and "rejected" in e:
        chosen = e["chosen"]
        rejected = e["rejected"] if isinstance(e["rejected"], list) else [e["rejected"]]
        if not isinstance(chosen, str) or not rejected or not all(isinstance(r, str) for r in rejected):
            raise DataFormatError(path, None, f"entry {i}: 'chosen'/'rejected' must be strings")
    else:
        raise DataFormatError(path, None, f"entry {i}: needs 'output' or 'chosen' and 'rejected'")
    msgs = []
    system = e.get("system")
    if system:
        msgs.append({"role": "system", "content": str(system)})
    for turn in e.get("history") or []:
        if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise DataFormatError(path, None, f"entry {i}: 'history' must be [[user, assistant], ...]")
        msgs += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    msgs.append({"role": "user", "content": instruction + ("\n" + inp if inp else "")})
    return {"id": f"{path.stem}/{i}", "dataset": path.stem, "user_id": None, "prompt": msgs,
            "chosen": chosen, "rejected": list(rejected), "candidates": [],
            "meta": {"source": path.name, "index": i}}  # fmt: skip
