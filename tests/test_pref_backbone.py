"""Conventional backbones on the DMPO preference test pairs (`pref-backbone`, DMPO Table 2):
leakage removal, scoring (positive first, sequential models on the record's history), the stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recranker.dmpo.backbones import (
    backbone_metrics,
    drop_after_positives,
    fit_and_score,
    positive_cutoffs,
    score_preference_records,
)
from recranker.dmpo.samples import PreferenceConfig, build_preferences
from recranker.errors import RecrankerError
from recranker.prompts.templates import DOMAINS

torch = pytest.importorskip("torch")

N_USERS, N_ITEMS = 30, 40
MF = {"dim": 8, "max_epochs": 2}
SASREC = {"dim": 16, "n_layers": 1, "n_heads": 1, "max_len": 10, "max_epochs": 2, "batch_size": 64}


def make_data(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prepared-style interactions: chronological per user, leave-one-out by time."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(N_USERS):
        n = int(rng.integers(14, 22))
        items = rng.choice(N_ITEMS, n, replace=False)
        ratings = rng.permutation(np.r_[[5.0, 5.0, 4.0, 1.0, 2.0, 3.0], rng.integers(1, 6, n - 6)])
        ts = 100_000 * u + 10 * np.arange(n)
        for t, (i, r) in enumerate(zip(items, ratings)):
            split = "test" if t == n - 1 else "valid" if t == n - 2 else "train"
            rows.append((u, int(i), float(r), int(ts[t]), split))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "split"])
    items = pd.DataFrame(
        {"item_id": np.arange(N_ITEMS), "title": [f"Film {i}" for i in range(N_ITEMS)]}
    )
    return inter, items


def make_records(inter: pd.DataFrame, items: pd.DataFrame, n_test: int = 24) -> list[dict]:
    cfg = PreferenceConfig(
        min_positives=3,
        min_negatives=3,
        history_len=8,
        k_negatives=2,
        n_train=3,
        n_valid=3,
        n_test=n_test,
    )
    return build_preferences(inter.loc[inter["split"] == "train"], items, cfg, seed=0, dataset="toy",
                             domain=DOMAINS["movie"])["test"]


@pytest.fixture(scope="module")
def toy():
    inter, items = make_data()
    return inter, items, make_records(inter, items)


# ----------------------------------------------------------------------------- leakage


def test_drop_after_positives_removes_exactly_the_test_users_future(toy):
    inter, _, recs = toy
    test_users = {r["user_id"] for r in recs}
    assert 0 < len(test_users) < N_USERS  # other (train/valid/ineligible) users exist
    out = drop_after_positives(inter, recs)
    ts = {
        (u, i): t for u, i, t in inter[["user_id", "item_id", "timestamp"]].itertuples(index=False)
    }
    cut = {}
    for r in recs:
        u = r["user_id"]
        cut[u] = min(cut.get(u, np.inf), ts[(u, r["meta"]["positive"])])
    assert positive_cutoffs(inter, recs) == cut
    kept = set(map(tuple, out[["user_id", "item_id"]].to_numpy().tolist()))
    for r in recs:  # every positive, and every negative from the positive on, is gone
        u, pos = r["user_id"], r["meta"]["positive"]
        assert (u, pos) not in kept
        for n in r["meta"]["negatives"]:
            assert ((u, n) in kept) == (ts[(u, n)] < cut[u])
    for u in test_users:
        before, after = inter[inter["user_id"] == u], out[out["user_id"] == u]
        assert (after["timestamp"] < cut[u]).all()
        assert len(after) == int((before["timestamp"] < cut[u]).sum()) < len(before)
        assert not after["split"].isin(["valid", "test"]).any()
    others = inter[~inter["user_id"].isin(test_users)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        out[~out["user_id"].isin(test_users)].reset_index(drop=True), others
    )
    assert list(out.columns) == list(inter.columns)


def test_drop_after_positives_by_hand():
    inter = pd.DataFrame(
        {
            "user_id": [0, 0, 0, 0, 0, 1, 1],
            "item_id": [1, 2, 3, 4, 5, 3, 4],
            "rating": 3.0,
            "timestamp": [10, 20, 30, 30, 40, 50, 60],
            "split": ["train"] * 3 + ["valid", "test", "train", "train"],
        }
    )
    rec = {"id": "r", "user_id": 0, "meta": {"positive": 3, "negatives": [5], "history": [1, 2]}}
    out = drop_after_positives(inter, [rec])
    assert out["item_id"].tolist() == [
        1,
        2,
        3,
        4,
    ]  # user 0 keeps ts < 30 (ties go); user 1 untouched
    assert out["user_id"].tolist() == [0, 0, 1, 1]
    with pytest.raises(RecrankerError, match="no interaction with its positive item 9"):
        drop_after_positives(inter, [{**rec, "meta": {**rec["meta"], "positive": 9}}])
    with pytest.raises(RecrankerError, match="integer 'user_id'"):
        drop_after_positives(inter, [{"user_id": None, "meta": {}}])


# ----------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_score_sequences_matches_the_user_scorer(name):
    """Scoring a user's own context sequence gives the scores the model ranks that user with."""
    from recranker.backbones import Interactions, build

    inter, _ = make_data()
    data = Interactions.from_frame(inter, N_USERS, N_ITEMS)
    model = build(name, N_USERS, N_ITEMS, SASREC, seed=0)
    model.eval()
    seqs = []
    for u in range(N_USERS):
        g = inter[inter["user_id"] == u]
        seqs.append(
            g.loc[g["split"] != "test", "item_id"].tolist()
        )  # train + valid: the test context
    with torch.no_grad():
        want = model.scorer(data, "test")(torch.arange(N_USERS))
        got = model.score_sequences(seqs, batch_size=7)
    assert got.shape == (N_USERS, N_ITEMS)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert model.score_sequences([]).shape == (0, N_ITEMS)


def test_non_sequential_scores_are_the_users_representation(toy):
    from recranker.backbones import Interactions, build

    inter, _, recs = toy
    data = Interactions.from_frame(drop_after_positives(inter, recs), N_USERS, N_ITEMS)
    model = build("mf", N_USERS, N_ITEMS, MF, seed=0)
    scored = score_preference_records(model, data, recs, batch_size=5)
    with torch.no_grad():
        full = (model.user.weight @ model.item.weight.T).numpy()
    for r, s in zip(recs, scored):
        cands = [r["meta"]["positive"], *r["meta"]["negatives"]]
        assert s["candidates"] == cands and s["labels"] == [1, 0] and s["id"] == r["id"]
        np.testing.assert_allclose(s["scores"], full[r["user_id"], cands], rtol=1e-5)


@pytest.mark.parametrize("name,hyper", [("mf", MF), ("sasrec", SASREC)])
def test_fit_and_score_gives_preference_metrics(toy, name, hyper):
    inter, _, recs = toy
    scored, fit = fit_and_score(name, inter, recs, N_USERS, N_ITEMS, hyper, patience=2, seed=0)
    assert len(scored) == len(recs) and 1 <= fit.epochs <= 2
    for r, s in zip(recs, scored):
        assert s["candidates"][0] == r["meta"]["positive"] and s["labels"][0] == 1
        assert s["candidates"][1:] == r["meta"]["negatives"] and s["labels"][1:] == [0]
        assert len(s["scores"]) == 2 and all(np.isfinite(s["scores"])) and not s["truncated"]
    m = backbone_metrics(scored, fit)
    assert set(m) == {"auc", "pairwise_accuracy", "top1_accuracy", "n_samples", "epochs"}  # no timings
    assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["pairwise_accuracy"] <= 1.0
    assert m["n_samples"] == len(recs) and m["epochs"] == fit.epochs


def test_sequential_scores_follow_the_records_history(toy):
    """Two records with the same candidates but different histories get different SASRec scores."""
    inter, _, recs = toy
    a = recs[0]
    b = {
        **a,
        "id": "other-history",
        "meta": {**a["meta"], "history": list(reversed(a["meta"]["history"]))[:2]},
    }
    scored, _ = fit_and_score(
        "sasrec", inter, [a, b], N_USERS, N_ITEMS, {**SASREC, "max_epochs": 1}, seed=0
    )
    assert scored[0]["scores"] != scored[1]["scores"]
    long = {
        **a,
        "meta": {**a["meta"], "history": a["meta"]["history"] * 3},
    }  # longer than max_len 10
    scored, _ = fit_and_score(
        "sasrec", inter, [long], N_USERS, N_ITEMS, {**SASREC, "max_epochs": 1}, seed=0
    )
    assert scored[0]["truncated"] == (len(long["meta"]["history"]) > 10)


# ----------------------------------------------------------------------------- the stage


def _project(root, backbones: str, with_data: bool = True) -> None:
    if with_data:
        inter, items = make_data()
        recs = make_records(inter, items)
        proc = root / "data/processed/toy"
        proc.mkdir(parents=True)
        inter.to_parquet(proc / "interactions.parquet", index=False)
        (proc / "stats.json").write_text(json.dumps({"users": N_USERS, "items": N_ITEMS}))
        pref = root / "data/preferences/toy"
        pref.mkdir(parents=True)
        (pref / "pref_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (root / "params.yaml").write_text(
        "seed: 0\nrun: {datasets: [toy]}\ndatasets: {toy: {format: ml-100k}}\n"
        "backbone: {threads: 1, patience: 2, mf: {dim: 8, max_epochs: 2},\n"
        "  sasrec: {dim: 16, n_layers: 1, n_heads: 1, max_len: 10, max_epochs: 1,\n"
        "           batch_size: 64}}\n"
        f"llm: {{pref_eval: {{max_samples: 10, backbones: {backbones}}}}}\n"
    )


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    import stages.common

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


def test_stage_writes_metrics_on_pref_evals_records(in_project):
    from recranker.dmpo.samples import subsample
    from stages import STAGES
    from stages.common import user_errors
    from stages.dmpo_io import read_preferences
    from stages.pref_backbone import pref_backbone

    assert "pref-backbone" in dict(STAGES)
    _project(in_project, "[mf, sasrec]")
    user_errors(pref_backbone)()
    out = json.loads((in_project / "metrics/pref_backbone/toy.json").read_text())
    assert set(out) == {"mf", "sasrec"}
    for m in out.values():
        assert set(m) == {
            "auc",
            "pairwise_accuracy",
            "top1_accuracy",
            "n_samples",
            "epochs",
        }
        assert 0.0 <= m["auc"] <= 1.0 and m["n_samples"] == 10 and m["epochs"] >= 1
    # the training times apart, in metrics no stage reads
    times = json.loads((in_project / "metrics/timings/pref_backbone/toy.json").read_text())
    assert set(times) == {"mf", "sasrec"} and all(t["train_seconds"] >= 0 for t in times.values())
    # the same subset pref-eval scores (seeded by params.seed)
    rows = read_preferences(in_project / "data/preferences/toy/pref_test.jsonl", k=1)
    assert len(rows) > 10 and len(subsample(rows, 10, 0)) == 10


def test_stage_without_backbones_writes_an_empty_file(in_project):
    from stages.common import user_errors
    from stages.pref_backbone import pref_backbone

    _project(in_project, "[]", with_data=False)  # no data needed when nothing is trained
    user_errors(pref_backbone)()
    assert json.loads((in_project / "metrics/pref_backbone/toy.json").read_text()) == {}


def test_stage_unknown_backbone_is_one_line(in_project, capsys):
    import typer

    from stages.common import user_errors
    from stages.pref_backbone import pref_backbone

    _project(in_project, "[mf, nope]", with_data=False)
    with pytest.raises(typer.Exit) as exc:
        user_errors(pref_backbone)()
    assert exc.value.exit_code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "llm.pref_eval.backbones" in err and "unknown backbone 'nope'" in err
    assert not (in_project / "metrics").exists()
