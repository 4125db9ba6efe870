"""DMPO: the per-negative loss by hand, k=1 equals trl's DPO loss, the pairwise batch layout, the shared-prefix
forward, precomputed reference log-probs, refusal of over-long samples, ln 2 at the start, the loss goes down."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

torch = pytest.importorskip("torch")

from recranker.dmpo.config import DMPOSettings
from recranker.dmpo.train import build_trainer, dmpo_loss, to_preference, train_dmpo
from recranker.errors import RecrankerError
from recranker.llm.config import SFTSettings
from recranker.llm.sft import train_sft


@pytest.fixture(scope="module")
def tiny_sft(tiny_base, tmp_path_factory) -> Path:
    """A (briefly) SFT-tuned LoRA adapter, so the adapter is non-trivial when DMPO starts."""
    out = tmp_path_factory.mktemp("dmpo") / "sft"
    recs = [{"messages": [{"role": "user", "content": f"Movie {i}?"}], "completion": "Yes" if i % 2 else "No"}
            for i in range(4)]
    cfg = SFTSettings(max_steps=2, batch_size=2, grad_accum=1, lr=1e-2, warmup_steps=0, max_length=64, group_by_length=False)
    train_sft(tiny_base, recs, [], out, cfg.with_run(checkpoint_dir=str(out.parent / "ck")))
    return out


def prefs(n: int, k: int = 3) -> list[dict]:
    """Records of the `preferences` schema: k pairwise prompts (same history, negative i)."""
    negs = ["No Way", "Maybe Later", "Never Again", "Not Sure", "Skip It"]
    rows = []
    for i in range(n):
        pairs = []
        for j, neg in enumerate(negs[:k]):
            a, b = ("Yes Please", neg) if (i + j) % 2 else (neg, "Yes Please")
            pairs.append({"prompt": [{"role": "user", "content": f"The user liked film {i}. Rank: {a} / {b}"}],
                          "chosen": f"Yes Please, {neg}", "rejected": f"{neg}, Yes Please"})
        rows.append({"id": f"toy/dmpo/train/u{i}/0", "pairs": pairs, "meta": {"user": i}})
    return rows


def settings(tmp_path: Path, lora=None, **kw) -> DMPOSettings:
    base = {"k": 3, "max_steps": 4, "batch_size": 2, "grad_accum": 1, "max_length": 96, "lr": 1e-2,
            "warmup_steps": 0, "save_steps": 100, "bf16": False}
    return DMPOSettings(**{**base, **kw}).with_run(seed=0, checkpoint_dir=str(tmp_path / "ckpt"), lora=lora)


def test_per_negative_loss_against_a_hand_computation():
    # one sample, k = 2 pairwise prompts; sequence log-probs chosen by hand
    pc, rc = torch.tensor([[-2.0], [-3.0]]), torch.tensor([[-2.5], [-3.0]])  # Δchosen = .5, 0
    pr, rr = torch.tensor([[-4.0], [-1.0]]), torch.tensor([[-3.0], [-2.0]])  # Δrejected = -1, 1
    loss, r_c, r_r = dmpo_loss(pc, pr, rc, rr, beta=0.5)
    # mean Δchosen = .25, mean Δrejected = 0 → −log σ(0.5 · 0.25) = log(1 + e^−0.125)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.125)), abs=1e-6)
    torch.testing.assert_close(r_c, torch.tensor([[0.25], [0.0]]))
    torch.testing.assert_close(r_r, torch.tensor([[-0.5], [0.5]]))
    g = torch.Generator().manual_seed(0)
    pc, rc = torch.randn(1, 5, generator=g), torch.randn(1, 5, generator=g)
    pr, rr = torch.randn(1, 5, generator=g), torch.randn(1, 5, generator=g)
    dpo = -torch.nn.functional.logsigmoid(0.5 * ((pc[0] - rc[0]) - (pr[0] - rr[0])))
    torch.testing.assert_close(dmpo_loss(pc, pr, rc, rr, beta=0.5)[0], dpo)  # k = 1: DPO
    same, _, _ = dmpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    torch.testing.assert_close(same, torch.full((5,), math.log(2)))


def test_to_preference_checks_and_takes_the_first_k_pairs():
    ex = to_preference(prefs(1, k=5)[0], k=3)
    assert len(ex["pairs"]) == 3
    assert ex["pairs"][0]["rejected"] == [{"role": "assistant", "content": "No Way, Yes Please"}]
    with pytest.raises(RecrankerError, match="needs 3"):
        to_preference(prefs(1, k=2)[0], k=3, where="pref_train.jsonl:4")
    with pytest.raises(RecrankerError, match="'chosen'"):
        to_preference({"pairs": [{"prompt": "x", "chosen": 3, "rejected": "b"}]}, 1)


def batch_for(trainer):
    loader = trainer.get_train_dataloader()
    return next(iter(loader))


def trl_batch(trainer, pair: int = 0):
    """trl's own DPO batch (its collator: full [chosen; rejected] sequences) of pair ``pair`` of each sample."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    rows = [trainer.train_dataset[i] for i in range(trainer.args.per_device_train_batch_size)]
    flat = [{key: r[key][pair] for key in ("prompt_ids", "chosen_ids", "rejected_ids")} for r in rows]
    return DataCollatorForPreference(pad_token_id=trainer.processing_class.pad_token_id)(flat)


def nudge_policy(trainer):
    """Move the policy away from the reference, so comparisons are not trivially ln 2 == ln 2."""
    with torch.no_grad():
        for n, p in trainer.model.named_parameters():
            if ".default." in n and "lora_A" in n:
                p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))


def test_k1_loss_equals_trl_dpo_loss_on_the_same_pairs(tiny_base, tiny_sft, tmp_path):
    from trl import DPOTrainer

    examples = [to_preference(r, 1) for r in prefs(4, k=1)]
    trainer = build_trainer(tiny_sft, tiny_base, examples, settings(tmp_path, k=1, precompute_ref=False),
                            tmp_path / "o")
    nudge_policy(trainer)
    trainer.model.train()
    ours = trainer._compute_loss(trainer.model, batch_for(trainer), False)
    theirs = DPOTrainer._compute_loss(trainer, trainer.model, trl_batch(trainer), False)
    assert abs(ours.item() - math.log(2)) > 1e-4
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_shared_prefix_gives_the_full_sequences_log_probs_and_gradients(tiny_base, tiny_sft, tmp_path):
    """The prompt encoded once for its 2k answers == each (prompt, answer) run in full, values and grads."""
    from recranker.dmpo.shared_prefix import batch_logps

    examples = [to_preference(r, 3) for r in prefs(2)]
    trainer = build_trainer(tiny_sft, tiny_base, examples, settings(tmp_path, precompute_ref=False), tmp_path / "o")
    nudge_policy(trainer)
    model = trainer.model
    batch = batch_for(trainer)
    sample = batch["samples"][0]
    assert sample["prefix_ids"].numel() > sample["suffix_ids"].size(1)  # most of the prompt is shared
    assert sample["suffix_ids"].size(0) == 2 * 3  # chosen_1..3, rejected_1..3

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    shared = batch_logps(model, batch["samples"])  # [2k, B]
    g_shared = grads(shared.sum())
    full = []
    for pair in range(3):
        b = trl_batch(trainer, pair)
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        logp = torch.log_softmax(out.logits[:, :-1].float(), -1).gather(-1, b["input_ids"][:, 1:, None])[..., 0]
        full.append((logp * b["completion_mask"][:, 1:]).sum(1).view(2, -1))  # [chosen; rejected] × B
    full = torch.stack([f[0] for f in full] + [f[1] for f in full])  # [2k, B], the shared layout
    g_full = grads(full.sum())
    torch.testing.assert_close(shared, full, rtol=1e-4, atol=1e-4)
    for n in g_full:
        torch.testing.assert_close(g_shared[n], g_full[n], rtol=1e-3, atol=1e-5)


def test_pairwise_batch_layout_and_precomputed_reference(tiny_base, tiny_sft, tmp_path):
    examples = [to_preference(r, 3) for r in prefs(2)]
    trainer = build_trainer(tiny_sft, tiny_base, examples, settings(tmp_path), tmp_path / "o")
    batch = batch_for(trainer)
    assert len(batch["samples"]) == 2 and batch["ref_chosen_logps"].shape == (2, 3)  # per sample and pair
    # each pair's chosen and rejected suffixes share x_i up to the answer; the x_i differ
    s = batch["samples"][0]
    for i in range(3):
        c, r = i, 3 + i
        start = int(s["completion_mask"][c].argmax())
        assert torch.equal(s["suffix_ids"][c, :start], s["suffix_ids"][r, :start])
    assert not torch.equal(s["suffix_ids"][0], s["suffix_ids"][1])
    # the precomputed values are the reference forward on the same batch
    fresh = trainer.compute_ref_log_probs(trainer.model, {k: v for k, v in batch.items() if "ref_" not in k})
    torch.testing.assert_close(fresh[0], batch["ref_chosen_logps"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fresh[1], batch["ref_rejected_logps"], rtol=1e-4, atol=1e-4)


def test_over_long_samples_are_refused_not_truncated(tiny_base, tiny_sft, tmp_path):
    rows = prefs(3)
    rows[1]["pairs"][2]["prompt"][0]["content"] += " film" * 80
    examples = [to_preference(r, 3) for r in rows]
    with pytest.raises(RecrankerError, match=r"llm\.dmpo\.max_length=96 would cut toy/dmpo/train/u1/0 "
                                             r"\(longest sample \d+ tokens\)"):
        build_trainer(tiny_sft, tiny_base, examples, settings(tmp_path), tmp_path / "o",
                      ids=[r["id"] for r in rows])


def test_first_loss_is_ln2_and_loss_decreases(tiny_base, tiny_sft, tmp_path):
    report = train_dmpo(tiny_sft, tiny_base, prefs(4), tmp_path / "dmpo", settings(tmp_path, max_steps=6))
    losses = [c["loss"] for c in report["curve"]]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference (SFT) at step 1
    assert losses[-1] < losses[0] - 0.01
    assert report["final_reward_margin"] > 0
    assert (tmp_path / "dmpo" / "adapter_config.json").exists()
    assert not (tmp_path / "dmpo" / "ref").exists()  # only the trained adapter is saved
    assert not (tmp_path / "ckpt").exists()


def test_init_base_starts_from_the_base_model_with_a_fresh_adapter(tiny_base, tmp_path):
    """"Without SFT": the SFT directory is never read (here it does not even exist)."""
    from recranker.llm.config import LoraSettings

    report = train_dmpo(tmp_path / "no-sft", tiny_base, prefs(4), tmp_path / "dmpo",
                        settings(tmp_path, max_steps=3, init="base", lora=LoraSettings(r=4, alpha=8)))
    assert report["first_train_loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == base
    assert (tmp_path / "dmpo" / "adapter_config.json").exists()
    with pytest.raises(ValidationError, match="init"):  # the section refuses it before any training
        settings(tmp_path, init="rlhf")
