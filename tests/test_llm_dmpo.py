"""DMPO guard tests: k=1 equals trl's DPO loss, ln 2 at the start, the loss goes down."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from recranker.errors import RecrankerError
from recranker.llm.dmpo import DMPOSettings, build_trainer, dmpo_loss, to_preference, train_dmpo
from recranker.llm.sft import SFTSettings, train_sft


@pytest.fixture(scope="module")
def tiny_sft(tiny_base, tmp_path_factory) -> Path:
    """A (briefly) SFT-tuned LoRA adapter, so the adapter is non-trivial when DMPO starts."""
    out = tmp_path_factory.mktemp("dmpo") / "sft"
    recs = [{"messages": [{"role": "user", "content": f"Movie {i}?"}], "completion": "Yes" if i % 2 else "No"}
            for i in range(4)]
    train_sft(tiny_base, recs, [], out, SFTSettings(max_steps=2, batch_size=2, lr=1e-2, warmup_steps=0,
                                                    max_length=64, checkpoint_dir=str(out.parent / "ck")))
    return out


def prefs(n: int, k: int = 3) -> list[dict]:
    negs = ["No", "Maybe later", "Never", "I do not know", "Skip"]
    return [
        {"prompt": [{"role": "user", "content": f"The user liked film {i}. Will they like film {i + 1}?"}],
         "chosen": "Yes", "rejected": negs[:k], "meta": {"user": i}}
        for i in range(n)
    ]


def settings(tmp_path: Path, **kw) -> DMPOSettings:
    base = {"seed": 0, "k": 3, "max_steps": 4, "batch_size": 2, "max_length": 96, "lr": 1e-2,
            "warmup_steps": 0, "save_steps": 100, "checkpoint_dir": str(tmp_path / "ckpt")}
    return DMPOSettings(**{**base, **kw})


def test_dmpo_loss_formula_and_k1_reduces_to_dpo():
    g = torch.Generator().manual_seed(0)
    pc, rc = torch.randn(5, generator=g), torch.randn(5, generator=g)
    pr, rr = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    loss, _, _ = dmpo_loss(pc, pr, rc, rr, beta=0.1)
    expected = -torch.nn.functional.logsigmoid(0.1 * ((pc - rc) - (pr - rr).mean(0)))
    torch.testing.assert_close(loss, expected)
    loss1, _, _ = dmpo_loss(pc, pr[:1], rc, rr[:1], beta=0.5)
    dpo = -torch.nn.functional.logsigmoid(0.5 * ((pc - rc) - (pr[0] - rr[0])))
    torch.testing.assert_close(loss1, dpo)
    same, _, _ = dmpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    torch.testing.assert_close(same, torch.full((5,), math.log(2)))


def test_to_preference_checks_and_truncates_negatives():
    ex = to_preference(prefs(1, k=5)[0], k=3)
    assert len(ex["rejected"]) == 3 and ex["rejected"][0] == [{"role": "assistant", "content": "No"}]
    assert to_preference({"prompt": "hi", "chosen": "a", "rejected": ["b"]}, 1)["prompt"][0]["role"] == "user"
    with pytest.raises(RecrankerError, match="needs 3"):
        to_preference(prefs(1, k=2)[0], k=3, where="pref_train.jsonl:4")
    with pytest.raises(RecrankerError, match="'chosen'"):
        to_preference({"prompt": "x", "chosen": 3, "rejected": ["b"]}, 1)


def batch_for(trainer):
    loader = trainer.get_train_dataloader()
    return next(iter(loader))


def test_k1_loss_equals_trl_dpo_loss_on_the_same_batch(tiny_base, tiny_sft, tmp_path):
    from trl import DPOTrainer

    examples = [to_preference(r, 1) for r in prefs(4, k=1)]
    trainer = build_trainer(tiny_sft, tiny_base, examples, settings(tmp_path, k=1), tmp_path / "o")
    # move the policy away from the reference so the comparison is not trivially ln 2 == ln 2
    with torch.no_grad():
        for n, p in trainer.model.named_parameters():
            if ".default." in n and "lora_A" in n:
                p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    batch = batch_for(trainer)
    assert batch["input_ids"].shape[0] == 2 * 2  # [chosen; rejected], trl's layout
    trainer.model.train()
    ours = trainer._compute_loss(trainer.model, batch, False)
    theirs = DPOTrainer._compute_loss(trainer, trainer.model, batch, False)
    assert abs(ours.item() - math.log(2)) > 1e-4
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_multi_negative_batch_layout(tiny_base, tiny_sft, tmp_path):
    examples = [to_preference(r, 3) for r in prefs(2)]
    trainer = build_trainer(tiny_sft, tiny_base, examples, settings(tmp_path), tmp_path / "o")
    batch = batch_for(trainer)
    assert batch["input_ids"].shape[0] == 2 * (1 + 3)
    # every row of a sample shares the prompt tokens; completions differ
    n_prompt = int(batch["completion_mask"][0].argmax())  # first completion token
    for row in (2, 4, 6):  # rejected_1..3 of sample 0
        assert torch.equal(batch["input_ids"][0, :n_prompt], batch["input_ids"][row, :n_prompt])
        assert int(batch["completion_mask"][row].argmax()) == n_prompt


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
    from recranker.llm.sft import LoraSettings

    report = train_dmpo(tmp_path / "no-sft", tiny_base, prefs(4), tmp_path / "dmpo",
                        settings(tmp_path, max_steps=3, init="base", lora=LoraSettings(r=4, alpha=8)))
    assert report["first_train_loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == base
    assert (tmp_path / "dmpo" / "adapter_config.json").exists()
    with pytest.raises(RecrankerError, match="init"):
        train_dmpo(tiny_base, tiny_base, prefs(2), tmp_path / "x", settings(tmp_path, init="rlhf"))
