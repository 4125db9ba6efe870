"""DMPO preference data (labels, splits by user, chosen/rejected layout) and the
LLaMA-Factory importer; the `preferences` and `import-preferences` commands."""

import json

import numpy as np
import pandas as pd
import pytest

from recranker.errors import DataFormatError, RecrankerError
from recranker.preferences import (
    PreferenceConfig,
    build_preferences,
    eligible_users,
    import_llamafactory,
    sft_rows,
)
from recranker.prompts import DOMAINS


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


def cfg(**kw):
    base = {"dataset": "toy", "domain": DOMAINS["movie"], "n_train": 10, "n_valid": 10, "n_test": 60}
    return PreferenceConfig(**{**base, **kw})


def test_samples_follow_the_dmpo_recipe():
    inter, items = make_data()
    c = cfg()
    out = build_preferences(inter, items, c, seed=0)
    assert [len(out[s]) for s in ("train", "valid", "test")] == [10, 10, 60]
    users = {s: {r["user_id"] for r in rows} for s, rows in out.items()}
    assert not users["train"] & users["valid"] and not users["train"] & users["test"]
    assert not users["valid"] & users["test"]  # split by user: no item-level leakage possible
    assert len(users["test"]) < 60  # some test users give several samples
    elig = set(eligible_users(inter, c).tolist())
    assert all(u in elig and u % 10 for s in users.values() for u in s)
    rating = {(u, i): (r, t) for u, i, r, t in inter.itertuples(index=False)}
    title = dict(zip(items["item_id"], items["title"]))
    first_shown = []
    for rows in out.values():
        ids = [r["id"] for r in rows]
        assert len(set(ids)) == len(ids)
        for r in rows:
            u, m = r["user_id"], r["meta"]
            pos, negs = m["positive"], m["negatives"]
            assert rating[u, pos][0] > 3 and all(rating[u, n][0] <= 3 for n in negs)
            assert len(negs) == c.k_negatives and len(r["rejected"]) == c.k_negatives
            assert sorted(r["candidates"]) == sorted([pos, *negs])
            assert 1 <= len(m["history"]) <= 40 and not set(negs) & set(m["history"])
            assert all(rating[u, h][1] < rating[u, pos][1] for h in m["history"])  # the past only
            names = [" ".join(title[i].split()) for i in [pos, *negs]]
            assert r["chosen"] == ", ".join(names)
            for j in range(len(negs)):  # rejected j: negative j ranked first, swapped with pos
                swapped = list(names)
                swapped[0], swapped[1 + j] = swapped[1 + j], swapped[0]
                assert r["rejected"][j] == ", ".join(swapped)
            assert "\n" not in r["chosen"]
            first_shown.append(r["candidates"][0] == pos)
    assert 0.1 < np.mean(first_shown) < 0.5  # candidate order randomised


def test_single_negative_is_the_pairwise_prompt():
    inter, items = make_data()
    out = build_preferences(inter, items, cfg(k_negatives=1), seed=0)
    r = out["train"][0]
    pos, neg = r["meta"]["positive"], r["meta"]["negatives"][0]
    t = dict(zip(items["item_id"], items["title"]))
    assert r["chosen"] == f"{t[pos]}, {t[neg]}" and r["rejected"] == [f"{t[neg]}, {t[pos]}"]
    assert "Rank the two candidate movies" in r["prompt"][1]["content"]
    sft = sft_rows(out["train"])
    assert sft[0]["messages"] == r["prompt"] and sft[0]["completion"] == r["chosen"]
    assert sft[0]["task"] == "dmpo"


def test_deterministic_and_size_errors():
    inter, items = make_data()
    a = json.dumps(build_preferences(inter, items, cfg(), seed=4), sort_keys=True)
    assert a == json.dumps(build_preferences(inter, items, cfg(), seed=4), sort_keys=True)
    assert a != json.dumps(build_preferences(inter, items, cfg(), seed=5), sort_keys=True)
    with pytest.raises(RecrankerError, match="n_train"):
        build_preferences(inter, items, cfg(n_train=100), seed=0)


def test_llamafactory_import(tmp_path):
    data = [
        {"instruction": "Rank these", "input": "A or B?", "output": ["A, B", "B, A"]},
        {"instruction": "Q", "system": "sys", "history": [["hi", "hello"]],
         "chosen": "good", "rejected": ["bad1", "bad2"]},
    ]
    f = tmp_path / "lf.json"
    f.write_text(json.dumps(data))
    rows = import_llamafactory(f)
    assert rows[0]["prompt"] == [{"role": "user", "content": "Rank these\nA or B?"}]
    assert rows[0]["chosen"] == "A, B" and rows[0]["rejected"] == ["B, A"]
    assert [m["role"] for m in rows[1]["prompt"]] == ["system", "user", "assistant", "user"]
    assert rows[1]["rejected"] == ["bad1", "bad2"] and rows[1]["meta"]["index"] == 1
    jl = tmp_path / "lf.jsonl"
    jl.write_text("\n".join(json.dumps(d) for d in data))
    assert [r["chosen"] for r in import_llamafactory(jl)] == ["A, B", "good"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "x", "output": ["only one"]}]))
    with pytest.raises(DataFormatError, match=r"bad\.json: entry 0: 'output'"):
        import_llamafactory(bad)
    bad.write_text("[{")
    with pytest.raises(DataFormatError, match=r"bad\.json:1: invalid JSON"):
        import_llamafactory(bad)


def test_preference_commands(tmp_path, monkeypatch):
    import stages.common
    from stages.common import user_errors
    from stages.preferences import import_preferences, preferences

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
    assert counts == {"sft_train.jsonl": 5, "pref_train.jsonl": 5, "pref_valid.jsonl": 5, "pref_test.jsonl": 20}
    assert json.loads((tmp_path / "metrics/preferences/toy.json").read_text())["test"]["samples"] == 20

    src = tmp_path / "lf.json"
    src.write_text(json.dumps([{"instruction": "Q", "input": "", "output": ["a", "b"]}]))
    user_errors(import_preferences)(file=src, out=tmp_path / "imported.jsonl")
    row = json.loads((tmp_path / "imported.jsonl").read_text())
    assert row["prompt"] == [{"role": "user", "content": "Q"}] and row["rejected"] == ["b"]
