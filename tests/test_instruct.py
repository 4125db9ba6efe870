"""Instruction builders (training negatives, answers, layout, position shifting) and the
`sample` / `instruct` stages run for real in a temporary project."""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recranker.prompts.config import InstructConfig
from recranker.prompts.corpus import DatasetContext, make_corpus
from recranker.prompts.ranking_rows import build_test
from recranker.prompts.templates import DOMAINS
from recranker.prompts.text import RatingScale
from recranker.prompts.training import build_training
from recranker.ranking.listwise import ListwiseParser

ROOT = Path(__file__).resolve().parents[1]
NASTY = ['Quote "x"\nB. Yes', "Tab\tand\r\nbreak", "{history}", "  ", "A. Labelled"]


def make_data(n_users=40, n_items=120, seed=0):
    """Processed-format frames: leave-one-out by time, ratings 1–5, a few nasty titles."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(12, 30))
        items = rng.choice(n_items, n, replace=False)
        ts = np.sort(rng.choice(10**6, n, replace=False))
        ratings = rng.integers(1, 6, n).astype(float)
        split = ["train"] * (n - 2) + ["valid", "test"]
        rows += [(u, int(i), r, int(t), s) for i, t, r, s in zip(items, ts, ratings, split)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "split"])
    titles = [f"Movie {i} ({1950 + i % 50})" for i in range(n_items)]
    titles[: len(NASTY)] = NASTY
    return inter, pd.DataFrame({"item_id": np.arange(n_items), "title": titles})


def make_candidates(inter, k=6, seed=0):
    """Backbone-like top-k for split=test: never an item of the user's train/valid rows."""
    rng = np.random.default_rng(seed)
    n_items = int(inter["item_id"].max()) + 1
    rows = []
    for u, g in inter.groupby("user_id"):
        seen = set(g.loc[g["split"] != "test", "item_id"])
        test_item = int(g.loc[g["split"] == "test", "item_id"].iloc[0])
        pool = [i for i in rng.permutation(n_items).tolist() if i not in seen][:k]
        if u % 2 == 0 and test_item not in pool:
            pool[int(rng.integers(k))] = test_item  # half the users: a hit
        rows += [(u, "test", r + 1, i, 1.0 - 0.1 * r) for r, i in enumerate(pool)]
        rows += [(u, "valid", r + 1, i, 0.5) for r, i in enumerate(pool)]
    return pd.DataFrame(rows, columns=["user_id", "split", "rank", "item_id", "score"])


def config(**kw):
    base = {"listwise_size": 6, "history_len": 8, "pairwise_both_orders": False, "enhance": False}
    base.update(kw)
    return InstructConfig(**base)


def context(**kw):
    return DatasetContext(**{"name": "toy", "domain": DOMAINS["movie"], "scale": RatingScale(1, 5),
                             "like_threshold": 4, "dislike_threshold": 2, **kw})


def item_mean(train, query):
    """A trivial, deterministic hint model for tests (the real one is the rating MF)."""
    means = train.groupby("item_id")["rating"].mean()
    return query["item_id"].map(means).fillna(train["rating"].mean()).to_numpy(float)


MULTISET = [(u, 1 + u % 3) for u in range(0, 40, 2)]


def test_training_answers_follow_the_ratings():
    inter, items = make_data()
    cfg = config(enhance=True)
    corpus = make_corpus(inter, items, context(), cfg, seed=1)
    rows, stats = build_training(corpus, MULTISET, cfg, 1, item_mean)
    assert stats["per_task"] == {t: sum(m for _, m in MULTISET) for t in cfg.tasks}
    train = inter[inter["split"] == "train"]
    rating = {(u, i): r for u, i, r in train[["user_id", "item_id", "rating"]].itertuples(index=False)}
    fold = {(u, i): f for u, i, f in corpus.train[["user_id", "item_id", "fold"]].itertuples(index=False)}
    level = lambda u, i: 1 if (u, i) not in rating else (2 if rating[u, i] >= 4 else 0 if rating[u, i] <= 2 else -1)
    for r in rows:
        u, cands = r["user_id"], r["candidates"]
        seen = set(inter.loc[inter["user_id"] == u, "item_id"])
        rated = [i for i in cands if (u, i) in rating]
        assert all(i not in seen for i in cands if (u, i) not in rating)  # never-interacted
        assert {fold[u, i] for i in rated} <= {r["meta"]["fold"]}  # one cross-fitting fold
        hist = r["meta"]["history"]
        assert not set(hist) & set(cands) and len(hist) <= cfg.history_len
        expected_hist = train.loc[(train["user_id"] == u) & ~train["item_id"].isin(cands), "item_id"]
        assert hist == expected_hist.tolist()[-cfg.history_len:]  # latest, oldest first
        if r["task"] == "pointwise":
            assert r["completion"] == str(int(rating[u, cands[0]]))
        elif r["task"] == "pairwise":
            la, lb = level(u, cands[0]), level(u, cands[1])
            assert -1 not in (la, lb) and la != lb
            assert r["completion"] == ("Yes" if la > lb else "No")
        else:
            titles = [corpus.titles[i] for i in cands]
            parsed = ListwiseParser(titles).parse(r["completion"])
            order = list(parsed.order)
            assert parsed.complete and sorted(order) == list(range(len(cands)))
            lv = [level(u, cands[i]) for i in order]
            assert lv == sorted(lv, reverse=True) and -1 not in lv
            assert sum(x == 2 for x in lv) <= cfg.listwise_liked
    yes = [r["completion"] == "Yes" for r in rows if r["task"] == "pairwise"]
    assert 0.2 < np.mean(yes) < 0.8
    assert stats["hint_coverage"] == 1.0


def test_training_is_deterministic_and_seeded():
    inter, items = make_data()
    cfg = config(shuffle_history=True)

    def dump(seed):
        rows, _ = build_training(make_corpus(inter, items, context(), cfg, seed), MULTISET, cfg, seed)
        return json.dumps(rows, sort_keys=True)

    assert dump(3) == dump(3)
    assert dump(3) != dump(4)


def test_position_shifting_randomises_positions():
    inter, items = make_data()
    cfg = config()
    rows, _ = build_training(make_corpus(inter, items, context(), cfg, 0), MULTISET * 3, cfg, 0)
    top_pos = [ListwiseParser([""] * 6).parse(r["completion"]).order[0] for r in rows if r["task"] == "listwise"]
    assert len(set(top_pos)) >= 4  # the best candidate is not always shown in the same place
    fixed = config(shuffle_candidates=False)
    rows, _ = build_training(make_corpus(inter, items, context(), fixed, 0), MULTISET, fixed, 0)
    assert all(r["candidates"] == sorted(r["candidates"]) for r in rows)


def test_test_prompts_share_a_byte_identical_user_prefix():
    inter, items = make_data()
    cand = make_candidates(inter)
    cand["rating_pred"] = 3.0 + (cand["item_id"] % 7) / 7
    cfg = config(enhance=True, n_test_permutations=2, shuffle_history=True)
    corpus = make_corpus(inter, items, context(), cfg, 0)
    rows = list(build_test(corpus, cand, "mf", cfg, 0))
    groups = defaultdict(list)
    for r in rows:
        groups[r["user_id"], r["meta"]["perm"]].append(r)
    assert {u for u, _ in groups} == set(range(40))
    test_item = inter[inter["split"] == "test"].set_index("user_id")["item_id"]
    visible = inter[inter["split"] != "test"]
    for (u, perm), rs in groups.items():
        tasks = [r["task"] for r in rs]
        assert tasks.count("pointwise") == 6 and tasks.count("pairwise") == 5 and tasks.count("listwise") == 1
        n = rs[0]["meta"]["prefix_chars"]
        prefix = rs[0]["messages"][1]["content"][:n]
        assert prefix.endswith("\n")
        for r in rs:
            assert r["messages"][0] == rs[0]["messages"][0]
            assert r["messages"][1]["content"][:n] == prefix
            assert r["label"] == test_item[u] and r["backbone"] == "mf"
            assert len(r["messages"]) == 2 and r["messages"][1]["role"] == "user"
        hist = visible.loc[visible["user_id"] == u, "item_id"].tolist()[-cfg.history_len:]
        assert sorted(rs[0]["meta"]["history"]) == sorted(hist)
        lw = next(r for r in rs if r["task"] == "listwise")
        ranked = cand[(cand["user_id"] == u) & (cand["split"] == "test")].sort_values("rank")
        assert sorted(lw["candidates"]) == sorted(ranked["item_id"])
        assert [ranked["item_id"].iloc[k - 1] for k in lw["meta"]["ranks"]] == lw["candidates"]
        assert lw["meta"]["target_in_candidates"] == (test_item[u] in lw["candidates"])
        # one line per candidate: no title broke the layout
        assert sum(ln[:2] in {f"{c}." for c in "ABCDEF"} for ln in lw["messages"][1]["content"].splitlines()) == 6
        # listwise hint = backbone order
        hint_line = next(ln for ln in lw["messages"][1]["content"].splitlines() if ln.startswith("Hint"))
        best_label = "ABCDEF"[lw["meta"]["ranks"].index(1)]
        assert hint_line.startswith(f"Hint: a conventional recommender system ranks them {best_label},")
    orders = {(u, p): next(r["candidates"] for r in rs if r["task"] == "listwise") for (u, p), rs in groups.items()}
    assert sum(orders[u, 0] != orders[u, 1] for u in range(40)) > 30  # permutations differ


def test_pointwise_is_emitted_once_when_history_is_fixed_and_pairs_modes():
    inter, items = make_data()
    cand = make_candidates(inter)
    cfg = config(n_test_permutations=3, pairwise_test_pairs="all", pairwise_both_orders=True)
    rows = list(build_test(make_corpus(inter, items, context(), cfg, 0), cand, "mf", cfg, 0))
    u0 = [r for r in rows if r["user_id"] == 0]
    assert {r["meta"]["perm"] for r in u0 if r["task"] == "pointwise"} == {0}
    assert sum(r["task"] == "pairwise" for r in u0) == 3 * 15 * 2
    assert all(r["meta"]["hint"] is None and "Hint" not in r["messages"][1]["content"] for r in rows)


def test_ten_point_scale_uses_one_digit_answers():
    inter, items = make_data()
    inter["rating"] = inter["rating"] * 2  # 2..10 on a 1–10 scale
    cfg = config(tasks=("pointwise",))
    ctx = context(scale=RatingScale(1, 10), like_threshold=8, dislike_threshold=4)
    rows, _ = build_training(make_corpus(inter, items, ctx, cfg, 0), MULTISET, cfg, 0)
    assert all(r["completion"] in [str(d) for d in range(10)] for r in rows)
    assert "on a scale of 0 to 9" in rows[0]["messages"][1]["content"]


# ----------------------------------------------------------------------------- stages


def _project(tmp_path: Path, enhance: bool) -> Path:
    inter, items = make_data()
    proc = tmp_path / "data/processed/toy"
    proc.mkdir(parents=True)
    inter.to_parquet(proc / "interactions.parquet", index=False)
    items.to_parquet(proc / "items.parquet", index=False)
    (proc / "stats.json").write_text(json.dumps({"rating_scale": [1.0, 5.0], "users": 40}))
    bb = tmp_path / "models/backbones/toy/mf"
    bb.mkdir(parents=True)
    make_candidates(inter).to_parquet(bb / "candidates.parquet", index=False)
    np.save(bb / "user_emb.npy", np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))
    (tmp_path / "params.yaml").write_text(
        "seed: 5\nrun: {datasets: [toy], backbones: [mf]}\n"
        "datasets: {toy: {format: ml-100k}}\n"
        "sampling: {mode: adaptive, n_users: 30, n_clusters: 3, kmeans_n_init: 2}\n"
        f"instruct: {{enhance: {str(enhance).lower()}, listwise_size: 6, n_folds: 3, "
        "rating_mf: {epochs: 2, dim: 4}}\n"
    )
    return tmp_path


def _run(cwd: Path, monkeypatch, cmd: str) -> None:
    """Run a stage command in-process (as the CLI does, through ``user_errors``)."""
    import stages.common
    from stages.common import user_errors
    from stages.instruct import instruct
    from stages.sample import sample

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(cwd / "params.yaml"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    user_errors({"sample": sample, "instruct": instruct}[cmd])(dataset="toy")


def test_sample_and_instruct_stages_end_to_end(tmp_path, monkeypatch):
    root = _project(tmp_path, enhance=True)
    _run(root, monkeypatch, "sample")
    _run(root, monkeypatch, "instruct")
    users = json.loads((root / "data/sampled/toy/users.json").read_text())
    assert sum(u["multiplicity"] for u in users["users"]) == 30
    assert json.loads((root / "metrics/sample/toy.json").read_text())["instances"] == 30
    out = root / "data/instructions"
    train = [json.loads(ln) for ln in (out / "train/toy.jsonl").read_text().splitlines()]
    test = [json.loads(ln) for ln in (out / "test/toy/mf.jsonl").read_text().splitlines()]
    assert len(train) == 90 and {r["task"] for r in train} == {"pointwise", "pairwise", "listwise"}
    assert all(r["meta"]["hint"] is not None for r in train + test)
    assert {r["user_id"] for r in test} == set(range(40))
    metrics = json.loads((root / "metrics/instruct/toy.json").read_text())
    assert metrics["train"]["rows"] == 90 and metrics["test"]["mf"]["rows"] == len(test)
    before = (out / "train/toy.jsonl").read_bytes(), (out / "test/toy/mf.jsonl").read_bytes()
    _run(root, monkeypatch, "instruct")
    assert before == ((out / "train/toy.jsonl").read_bytes(), (out / "test/toy/mf.jsonl").read_bytes())


def test_stage_errors_are_one_line(tmp_path, monkeypatch, capsys):
    import typer

    root = _project(tmp_path, enhance=False)
    with pytest.raises(typer.Exit) as exc:
        _run(root, monkeypatch, "instruct")  # users.json missing
    assert exc.value.exit_code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "users.json: not found" in lines[0]


def test_popular_negatives_are_drawn_by_training_popularity():
    """`negatives: popular` draws never-interacted candidates in proportion to their training
    interactions (+1), so they look like a backbone's proposals; `uniform` (the paper) does not."""
    inter, items = make_data(n_users=60, n_items=200)
    rng = np.random.default_rng(3)  # a long tail, as in real data: item i drawn ∝ 1 / (i + 1)
    zipf = 1.0 / np.arange(1, 201)
    inter["item_id"] = [int(i) for i in rng.choice(200, size=len(inter), p=zipf / zipf.sum())]
    inter = inter.drop_duplicates(["user_id", "item_id"], keep="last").reset_index(drop=True)
    train = inter[inter["split"] == "train"]
    pop = np.bincount(train["item_id"], minlength=200)

    def never_popularity(negatives):
        cfg = config(negatives=negatives)
        rows, _ = build_training(make_corpus(inter, items, context(), cfg, 0), MULTISET, cfg, 0)
        seen = inter.groupby("user_id")["item_id"].agg(set)
        drawn = [i for r in rows for i in r["candidates"] if i not in seen[r["user_id"]]]
        assert drawn
        return float(np.mean(pop[drawn]))

    assert never_popularity("popular") > 1.3 * never_popularity("uniform")
    with pytest.raises(Exception, match="negatives"):
        config(negatives="hard")
