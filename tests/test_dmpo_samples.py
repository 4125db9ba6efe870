"""DMPO samples (labels, pairwise prompts per negative, splits by user, no leakage) and the
`preferences` command."""

import json

import numpy as np
import pandas as pd
import pytest

from recranker.dmpo.samples import (
    PreferenceConfig,
    build_preferences,
    check_no_leakage,
    eligible_users,
    record_items,
    sft_rows,
)
from recranker.errors import RecrankerError
from recranker.prompts.templates import DOMAINS


def make_data(n_users=60, n_items=150, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(15, 60))
        items = rng.choice(n_items, n, replace=False)
        ts = np.sort(rng.choice(10**6, n, replace=False))
        ratings = rng.integers(1, 6, n).astype(float)
        if u % 10 == 0:
            ratings[:] = 5.0  # no negatives: never eligible
        rows += [(u, int(i), r, int(t)) for i, t, r in zip(items, ts, ratings)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    titles = [f"Film, The {i}" for i in range(n_items)]
    titles[3] = 'Bad\n"title"'
    return inter, pd.DataFrame({"item_id": np.arange(n_items), "title": titles})


TOY = {"dataset": "toy", "domain": DOMAINS["movie"]}  # what the records are of, not knobs


def cfg(**kw):
    base = {"n_train": 10, "n_valid": 10, "n_test": 60, "history_len": 40}
    return PreferenceConfig(**{**base, **kw})


def test_samples_follow_the_dmpo_recipe():
    inter, items = make_data()
    c = cfg(k_negatives=3, history_len=40)
    out = build_preferences(inter, items, c, seed=1, **TOY)
    assert [len(out[s]) for s in ("train", "valid", "test")] == [10, 10, 60]
    ok = set(eligible_users(inter, c).tolist())
    by_user = {u: g.sort_values("timestamp") for u, g in inter.groupby("user_id")}
    from recranker.prompts.text import clean_text

    title = {i: clean_text(t, 100) for i, t in zip(items["item_id"], items["title"])}
    for split, rows in out.items():
        for r in rows:
            assert r["user_id"] in ok
            m = r["meta"]
            g = by_user[r["user_id"]]
            rating = dict(zip(g["item_id"], g["rating"]))
            assert rating[m["positive"]] > 3 and all(rating[n] <= 3 for n in m["negatives"])
            seq = g["item_id"].tolist()
            at = seq.index(m["positive"])
            assert m["history"] == seq[max(0, at - 40) : at]  # ≤ 40 items just before the positive
            assert len(r["pairs"]) == (3 if split == "train" else 1)  # test/valid samples are pairs
            for pair, neg in zip(r["pairs"], m["negatives"]):
                p, n = title[m["positive"]], title[neg]
                assert pair["chosen"] == f"{p}, {n}" and pair["rejected"] == f"{n}, {p}"
                user = pair["prompt"][-1]["content"]
                assert "Rank the two candidate movies" in user
                shown = user.split("best first:\n")[1]
                assert shown in (f"- {p}\n- {n}\nAnswer with the two titles in that order, separated by a comma.",
                                 f"- {n}\n- {p}\nAnswer with the two titles in that order, separated by a comma.")
            # the k prompts share the history and the positive, differ in the negative
            hist = {pair["prompt"][-1]["content"].split("\nRank")[0] for pair in r["pairs"]}
            assert len(hist) == 1
    orders = [r["pairs"][0]["prompt"][-1]["content"].split("best first:\n- ")[1].startswith(
        title[r["meta"]["positive"]]) for r in out["test"]]
    assert 0 < sum(orders) < len(orders)  # candidates shown in random order


def test_no_item_of_a_users_valid_or_test_samples_in_their_training_samples():
    inter, items = make_data(n_users=40)
    out = build_preferences(inter, items, cfg(n_train=10, n_valid=5, n_test=30), seed=3, **TOY)
    check_no_leakage(out)
    train_items = {}
    for r in out["train"]:
        train_items.setdefault(r["user_id"], set()).update(record_items(r))
    for split in ("valid", "test"):
        for r in out[split]:
            assert not (train_items.get(r["user_id"], set()) & record_items(r))
    # the check fails when a user's test sample shares an item with their training sample
    leak = json.loads(json.dumps(out))
    victim = leak["train"][0]
    leak["test"][0]["user_id"] = victim["user_id"]
    leak["test"][0]["meta"]["negatives"] = [victim["meta"]["positive"]]
    with pytest.raises(RecrankerError, match="shares item"):
        check_no_leakage(leak)


def test_test_and_valid_pairs_do_not_depend_on_the_number_of_training_samples():
    """The few-shot sizes (preferences.n_train) are compared on one test set."""
    inter, items = make_data()
    few, many = (build_preferences(inter, items, cfg(n_train=n), seed=2, **TOY) for n in (3, 12))
    assert few["test"] == many["test"] and few["valid"] == many["valid"]
    assert few["train"] == many["train"][:3]  # the first training users are shared too
    per_user = {}
    for r in few["test"]:
        per_user[r["user_id"]] = per_user.get(r["user_id"], 0) + 1
    assert max(per_user.values()) == 2  # test_per_user
    assert len(per_user) == len(few["test"]) // 2


def test_sft_rows_answer_is_the_chosen_order():
    inter, items = make_data()
    out = build_preferences(inter, items, cfg(k_negatives=2), seed=0, **TOY)
    rows = sft_rows(out["train"])
    assert len(rows) == 2 * len(out["train"])
    assert rows[0]["completion"] == out["train"][0]["pairs"][0]["chosen"]
    assert rows[1]["messages"] == out["train"][0]["pairs"][1]["prompt"]


def test_deterministic_and_size_errors():
    inter, items = make_data()
    a = build_preferences(inter, items, cfg(), seed=5, **TOY)
    assert a == build_preferences(inter, items, cfg(), seed=5, **TOY)
    assert a != build_preferences(inter, items, cfg(), seed=6, **TOY)
    with pytest.raises(RecrankerError, match="eligible users"):
        build_preferences(inter, items, cfg(n_train=40, n_valid=40), seed=0, **TOY)


def test_preference_command(tmp_path, monkeypatch):
    import stages.common
    from stages.common import user_errors
    from stages.preferences import preferences

    inter, items = make_data()
    inter["split"] = "train"
    proc = tmp_path / "data/processed/toy"
    proc.mkdir(parents=True)
    inter.to_parquet(proc / "interactions.parquet", index=False)
    items.to_parquet(proc / "items.parquet", index=False)
    (tmp_path / "params.yaml").write_text(
        "run: {datasets: [toy]}\ndatasets: {toy: {format: ml-100k}}\n"
        "preferences: {n_train: 5, n_valid: 5, n_test: 20}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    user_errors(preferences)(dataset="toy")
    out = tmp_path / "data/preferences/toy"
    counts = {f.name: len(f.read_text().splitlines()) for f in out.iterdir()}
    assert counts == {"sft_train.jsonl": 15, "pref_train.jsonl": 5, "pref_valid.jsonl": 5, "pref_test.jsonl": 20}
    assert json.loads((tmp_path / "metrics/preferences/toy.json").read_text())["test"]["samples"] == 20
