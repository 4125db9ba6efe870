"""Backbones: interface, masking, metrics, outputs, determinism, rating MF, the stage.

Fast tests on a small synthetic dataset with latent structure (users pick items by latent
affinity), so a model that learns anything clearly beats MostPop. Per-model learning tests
for the graph and sequential models are in test_backbones_models.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recranker.backbones import MODELS, Interactions, build
from recranker.backbones.base import load, sample_negatives
from recranker.backbones.export import export
from recranker.backbones.ranking import candidates_frame, evaluate, masked_topk
from recranker.backbones.rating_mf import fit_predict_ratings
from recranker.backbones.training import fit
from recranker.errors import RecrankerError
from recranker.metrics import rank_of, ranking_report


# ---------------------------------------------------------------------------- helpers
def synthetic_frame(
    n_users: int = 300, n_items: int = 200, per_user: int = 25, dim: int = 4, seed: int = 0,
    affinity: float = 3.0,
) -> pd.DataFrame:  # fmt: skip
    """Leave-one-out interactions where users choose items by latent affinity (Gumbel top-k).

    The items of a user's sequence drift along her preference ranking (most liked last), so
    sequential models also find an order to learn. Ratings are a noisy function of affinity.
    """
    rng = np.random.default_rng(seed)
    uf = rng.normal(size=(n_users, dim))
    vf = rng.normal(size=(n_items, dim))
    logits = affinity * (uf @ vf.T) / np.sqrt(dim) + np.log(rng.zipf(1.5, n_items).clip(max=50))
    g = logits + rng.gumbel(size=logits.shape)
    chosen = np.argsort(-g, axis=1)[:, :per_user][:, ::-1]  # strongest choice last
    users = np.repeat(np.arange(n_users), per_user)
    items = chosen.reshape(-1)
    aff = logits[users, items]
    rating = np.clip(
        np.round(3 + (aff - aff.mean()) / aff.std() + rng.normal(0, 0.5, len(aff))), 1, 5
    )
    pos = np.tile(np.arange(per_user)[::-1], n_users)
    split = np.where(pos == 0, "test", np.where(pos == 1, "valid", "train"))
    ts = np.tile(np.arange(per_user), n_users) + 1000
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "rating": rating.astype(float),
            "timestamp": ts,
            "split": split,
        }
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame()


@pytest.fixture(scope="module")
def data(frame) -> Interactions:
    return Interactions.from_frame(frame, 300, 200)


@pytest.fixture(scope="module")
def trained_mf(data):
    import torch

    torch.set_num_threads(1)
    model = build(
        "mf", data.n_users, data.n_items, {"dim": 16, "lr": 0.01, "max_epochs": 40}, seed=3
    )
    result = fit(model, data, patience=5, eval_every=2)
    return model, result


# ---------------------------------------------------------------------------- data view
def test_interactions_split_views():
    df = pd.DataFrame(
        {"user_id": [1, 0, 0, 0, 1, 1, 0], "item_id": [5, 2, 1, 3, 4, 0, 0],
         "timestamp": [9, 3, 1, 5, 1, 2, 7], "split": ["test", "train", "train", "valid", "train", "valid", "test"]}
    )  # fmt: skip
    d = Interactions.from_frame(df, 3, 6)
    assert d.train_users.tolist() == [0, 0, 1] and d.train_items.tolist() == [1, 2, 4]  # by time
    assert d.valid_items.tolist() == [3, 0, -1] and d.test_items.tolist() == [0, 5, -1]
    assert sorted(d.seen("valid")[0].indices) == [1, 2]
    assert sorted(d.seen("test")[0].indices) == [1, 2, 3]
    ctx = d.contexts("test", 3, pad=6)
    assert ctx.tolist() == [[1, 2, 3], [6, 4, 0], [6, 6, 6]]
    assert d.contexts("valid", 2, pad=6).tolist() == [[1, 2], [6, 4], [6, 6]]


def test_windows_cover_long_sequences():
    n = 12
    df = pd.DataFrame(
        {"user_id": 0, "item_id": np.arange(n), "split": ["train"] * (n - 2) + ["valid", "test"]}
    )
    w = Interactions.from_frame(df, 1, n).windows(max_len=4, pad=-1)
    # 10 training items, windows of 5 ending at the end and overlapping by one item
    assert w.tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 5], [-1, -1, -1, 0, 1]]


def test_interactions_rejects_two_test_rows():
    df = pd.DataFrame({"user_id": [0, 0], "item_id": [0, 1], "split": ["test", "test"]})
    with pytest.raises(RecrankerError, match="user 0 has 2 'test' rows"):
        Interactions.from_frame(df)


def test_negatives_never_hit_training_items(data):
    import torch

    users = torch.from_numpy(data.train_users)
    neg = sample_negatives(data, users, 4, torch.Generator().manual_seed(0))
    seen = data.train_matrix.toarray()
    assert not seen[np.repeat(data.train_users, 4), neg.reshape(-1).numpy()].any()


# ---------------------------------------------------------------------------- metrics
def test_metrics_hand_computed():
    ranked = np.array([[4, 2, 9], [1, 3, 5], [7, 8, 6]])
    ranks = rank_of(np.array([2, 5, 0]), ranked)
    assert ranks.tolist() == [2, 3, 0]
    rep = ranking_report(ranks, ks=(1, 3))
    assert rep["HR@1"] == 0 and rep["HR@3"] == pytest.approx(2 / 3)
    assert rep["NDCG@3"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / 3)


def test_evaluate_matches_a_manual_full_ranking(trained_mf, data):
    model, _ = trained_mf
    with np.errstate(all="ignore"):
        scores = (model.user.weight @ model.item.weight.T).detach().numpy().astype(np.float32)
    scores[data.seen("test").nonzero()] = -np.inf
    target = scores[np.arange(data.n_users), data.test_items][:, None]
    ranks = 1 + (scores > target).sum(axis=1)
    manual = ranking_report(ranks, ks=(3, 10))
    got = evaluate(model, data, "test", ks=(3, 10))
    for key in manual:
        assert got[key] == pytest.approx(manual[key], abs=2 / data.n_users)  # ties aside


# ---------------------------------------------------------------------------- models
def test_mf_learns_beyond_mostpop(trained_mf, data):
    model, result = trained_mf
    pop = build("mostpop", data.n_users, data.n_items)
    fit(pop, data)
    hr_pop = evaluate(pop, data, "test")["HR@10"]
    hr_mf = evaluate(model, data, "test")["HR@10"]
    assert hr_mf > hr_pop + 0.1, (hr_mf, hr_pop)
    assert 1 <= result.best_epoch <= result.epochs


def test_masking_never_returns_seen_items(trained_mf, data):
    model, _ = trained_mf
    for split in ("valid", "test"):
        items, _ = masked_topk(model, data, split, k=50, batch_size=64)
        seen = data.seen(split).toarray()
        assert not seen[np.repeat(np.arange(data.n_users), 50), items.reshape(-1)].any()
    items, _ = masked_topk(model, data, "test", k=50)
    assert not (items == data.valid_items[:, None]).any()


def test_candidates_cover_every_user(trained_mf, data):
    model, _ = trained_mf
    c = candidates_frame(model, data, k=7)
    assert list(c.columns) == ["user_id", "split", "rank", "item_id", "score"]
    counts = c.groupby(["user_id", "split"]).size()
    assert len(counts) == 2 * data.n_users and (counts == 7).all()
    assert (c.groupby(["user_id", "split"])["score"].diff().dropna() <= 0).all()  # sorted by rank
    assert c["score"].dtype == np.float64


def test_unknown_model_and_hyper_parameter():
    with pytest.raises(RecrankerError, match="unknown backbone 'nope'"):
        build("nope", 3, 3)
    with pytest.raises(RecrankerError, match="unknown hyper-parameter.*bogus"):
        build("mf", 3, 3, {"bogus": 1})


def test_export_roundtrip_and_determinism(data, tmp_path):
    import torch

    torch.set_num_threads(1)
    digests = []
    for run in range(2):
        model = build("mf", data.n_users, data.n_items, {"dim": 8, "max_epochs": 4}, seed=7)
        res = fit(model, data, patience=2)
        out = tmp_path / f"run{run}"
        metrics = export(model, data, res, out, top_k=5)
        digests.append(hashlib.sha256((out / "candidates.parquet").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert {p.name for p in out.iterdir()} == {
        "weights.safetensors", "config.json", "candidates.parquet", "user_emb.npy"
    }  # fmt: skip
    emb = np.load(out / "user_emb.npy")
    assert emb.dtype == np.float32 and emb.shape == (data.n_users, 8)
    assert set(metrics["test"]) == {f"{m}@{k}" for m in ("HR", "NDCG") for k in (3, 5, 10, 20)}
    again = load(out, data)
    a, _ = masked_topk(model, data, "test", 5)
    b, _ = masked_topk(again, data, "test", 5)
    assert (a == b).all()


def test_different_seed_changes_the_model(data):
    import torch

    def cands(seed):
        m = build("mf", data.n_users, data.n_items, {"dim": 8, "max_epochs": 2}, seed=seed)
        fit(m, data, patience=2)
        return masked_topk(m, data, "test", 10)[0]

    torch.set_num_threads(1)
    assert not (cands(1) == cands(2)).all()


# ---------------------------------------------------------------------------- rating MF
def test_rating_mf_beats_global_mean(frame):
    rng = np.random.default_rng(0)
    mask = rng.random(len(frame)) < 0.8
    train, query = frame[mask], frame[~mask]
    pred = fit_predict_ratings(train, query[["user_id", "item_id"]], 300, 200, seed=1)
    assert pred.shape == (len(query),) and pred.dtype == np.float64
    assert pred.min() >= train["rating"].min() and pred.max() <= train["rating"].max()
    rmse = np.sqrt(np.mean((pred - query["rating"].to_numpy()) ** 2))
    baseline = np.sqrt(np.mean((train["rating"].mean() - query["rating"].to_numpy()) ** 2))
    assert rmse < 0.9 * baseline, (rmse, baseline)
    again = fit_predict_ratings(train, query[["user_id", "item_id"]], 300, 200, seed=1)
    assert np.array_equal(pred, again)


def test_rating_mf_rejects_bad_ids(frame):
    with pytest.raises(RecrankerError, match="query ids outside"):
        fit_predict_ratings(frame, pd.DataFrame({"user_id": [999], "item_id": [0]}), 300, 200)


# ---------------------------------------------------------------------------- params + stage
def test_params_name_every_backbone_with_its_own_config():
    """One declaration: params.yaml backbone.<name> IS the model's config class."""
    from recranker.backbones import model_class
    from stages.params.backbone import BACKBONES, BackboneParams

    assert BACKBONES == tuple(MODELS)
    for name in MODELS:
        assert type(BackboneParams().model(name)) is model_class(name).Config


@pytest.mark.slow  # a subprocess importing torch: ~10 s
def test_stage_writes_all_outputs(frame, tmp_path):
    proc = tmp_path / "data" / "processed" / "toy"
    proc.mkdir(parents=True)
    frame.to_parquet(proc / "interactions.parquet", index=False)
    (proc / "stats.json").write_text(json.dumps({"users": 300, "items": 200}))
    (tmp_path / "params.yaml").write_text(
        "seed: 1\nrun:\n  datasets: [toy]\ndatasets:\n  toy:\n    format: ml-100k\n"
        "backbone:\n  top_k: 4\n  patience: 2\n  threads: 1\n  mf:\n    dim: 8\n    max_epochs: 3\n"
        "evaluate:\n  ks: [3]\n"  # evaluate.ks must lie within 1..backbone.top_k
    )
    env = {**os.environ, "RECRANKER_PARAMS": str(tmp_path / "params.yaml")}
    cmd = [sys.executable, "-m", "stages", "backbone", "--dataset", "toy", "--model", "mf"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    d = tmp_path / "models" / "backbones" / "toy" / "mf"
    c = pd.read_parquet(d / "candidates.parquet")
    assert len(c) == 300 * 2 * 4
    dvc_metrics = json.loads((tmp_path / "metrics" / "backbone" / "toy" / "mf.json").read_text())
    assert dvc_metrics["epochs"] == 3
    assert set(dvc_metrics["test"]) >= {"HR@3", "NDCG@3", "HR@5", "NDCG@5"}
    bad = subprocess.run(
        cmd[:-1] + ["nope"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "unknown backbone 'nope'" in bad.stderr


# ---------------------------------------------------------------- benchmark: RecBole hand-over
def test_recbole_export_orders_each_user_train_valid_test(tmp_path, benchmark_script):
    df = pd.DataFrame(
        {"user_id": [1, 0, 0, 0, 1, 1, 0], "item_id": [5, 2, 1, 3, 4, 0, 0],
         "timestamp": [9, 3, 1, 5, 1, 2, 7], "split": ["test", "train", "train", "valid", "train", "valid", "test"]}
    )  # fmt: skip
    path = tmp_path / "x" / "x.inter"
    benchmark_script("backbones").export_for_recbole(Interactions.from_frame(df, 3, 6), path)
    out = pd.read_csv(path, sep="\t")
    assert list(out.columns) == ["user_id:token", "item_id:token", "timestamp:float"]
    # RecBole's leave-one-out by time holds out the last row (test) and the one before (valid).
    assert out.values.tolist() == [[0, 1, 0], [0, 2, 1], [0, 3, 2], [0, 0, 3], [1, 4, 0], [1, 0, 1], [1, 5, 2]]


def test_benchmark_overrides_and_recbole_hyperparameters(benchmark_script):
    bench = benchmark_script("backbones")
    assert bench.parse_overrides(["mf.lr=0.001", "sgl.aug=nd"]) == {"mf": {"lr": 0.001}, "sgl": {"aug": "nd"}}
    with pytest.raises(SystemExit, match="MODEL.KEY=VALUE"):
        bench.parse_overrides(["lr=0.1"])
    config = bench.model_config("lightgcn", {"n_layers": 2})
    assert config["n_layers"] == 2 and config["dim"] == 64
    for model in bench.RECBOLE:
        h = bench.recbole_hparams(model, bench.model_config(model, {}), patience=10, max_epochs=None)
        assert h["stopping_step"] == 10 and h["epochs"] >= 1
    assert bench.recbole_hparams("sgl", bench.model_config("sgl", {}), 10, 3)["type"] == "ED"
