"""Every ranking backbone learns the synthetic latent structure (clearly beats MostPop),
respects the interface (masking, candidates, embeddings) and is reproducible from its seed."""

from __future__ import annotations

import numpy as np
import pytest
from test_backbones import synthetic_frame

from recranker.backbones import Interactions, build
from recranker.backbones.base import load
from recranker.backbones.ranking import evaluate, masked_topk
from recranker.backbones.training import fit

SMALL = {
    "mf": {"dim": 16, "lr": 0.01, "max_epochs": 30},
    "lightgcn": {"dim": 16, "n_layers": 2, "lr": 0.01, "batch_size": 1024, "max_epochs": 30},
    "mixgcf": {
        "dim": 16,
        "n_layers": 2,
        "lr": 0.01,
        "batch_size": 1024,
        "max_epochs": 30,
        "n_candidates": 8,
    },
    "sgl": {"dim": 16, "n_layers": 2, "lr": 0.01, "batch_size": 1024, "max_epochs": 30},
    "sasrec": {
        "dim": 16,
        "n_layers": 1,
        "max_len": 20,
        "lr": 5e-3,
        "batch_size": 64,
        "max_epochs": 30,
    },
    "bert4rec": {
        "dim": 16,
        "n_layers": 1,
        "max_len": 20,
        "lr": 5e-3,
        "batch_size": 64,
        "max_epochs": 30,
    },
    "cl4srec": {
        "dim": 16,
        "n_layers": 1,
        "max_len": 20,
        "lr": 5e-3,
        "batch_size": 64,
        "max_epochs": 30,
    },
}


@pytest.fixture(scope="module")
def data() -> Interactions:
    import torch

    torch.set_num_threads(1)
    return Interactions.from_frame(synthetic_frame(), 300, 200)


@pytest.fixture(scope="module")
def mostpop_hr(data) -> float:
    pop = build("mostpop", data.n_users, data.n_items)
    fit(pop, data)
    return evaluate(pop, data, "test")["HR@10"]


@pytest.mark.parametrize("name", list(SMALL))
def test_model_learns_and_keeps_the_interface(name, data, mostpop_hr, tmp_path):
    model = build(name, data.n_users, data.n_items, SMALL[name], seed=0)
    result = fit(model, data, patience=3, eval_every=3)
    hr = evaluate(model, data, "test")["HR@10"]
    assert hr > mostpop_hr + 0.05, (name, hr, mostpop_hr)
    items, _ = masked_topk(model, data, "test", 20)
    seen = data.seen("test").toarray()
    assert not seen[np.repeat(np.arange(data.n_users), 20), items.reshape(-1)].any()
    emb = model.user_embeddings(data)
    assert emb.dtype == np.float32 and emb.shape[0] == data.n_users and np.isfinite(emb).all()
    model.save(tmp_path)
    again = load(tmp_path, data)
    assert (masked_topk(again, data, "test", 10)[0] == items[:, :10]).all()
    assert result.best_epoch >= 1


@pytest.mark.parametrize("name", ["lightgcn", "sgl", "sasrec", "cl4srec"])
def test_same_seed_same_candidates(name, data):
    def run():
        cfg = {**SMALL[name], "max_epochs": 2}
        model = build(name, data.n_users, data.n_items, cfg, seed=5)
        fit(model, data, patience=1)
        return masked_topk(model, data, "test", 10)

    (a, sa), (b, sb) = run(), run()
    assert (a == b).all() and np.array_equal(sa, sb)


def test_sequential_test_context_ends_with_the_valid_item(data):
    model = build("sasrec", data.n_users, data.n_items, SMALL["sasrec"], seed=0)
    ctx_valid, ctx_test = model.context(data, "valid"), model.context(data, "test")
    assert (ctx_test[:, -1] == data.valid_items).all()
    assert (ctx_test[:, -2] == ctx_valid[:, -1]).all()
    bert = build("bert4rec", data.n_users, data.n_items, SMALL["bert4rec"], seed=0)
    ctx = bert.context(data, "test")
    assert (ctx[:, -1] == bert.mask_token).all() and (ctx[:, -2] == data.valid_items).all()


def test_cl4srec_augmentations_keep_items():
    import torch

    model = build("cl4srec", 1, 50, {"max_len": 8}, seed=0)
    pad, mask = model.pad, model.mask_token
    seq = torch.tensor([[pad, pad, 1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12, 13, 14]])
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = model.augment(seq, gen)
        for row, src in zip(out.tolist(), seq.tolist()):
            real = [x for x in row if x != pad]
            assert real and row[: len(row) - len(real)] == [pad] * (
                len(row) - len(real)
            )  # left-padded
            kept = [x for x in real if x != mask]
            assert set(kept) <= set(src) and len(real) <= len([x for x in src if x != pad])
