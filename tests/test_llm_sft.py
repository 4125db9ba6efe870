"""SFT: record conversion, held-out split, training on the tiny model, resume after interruption."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from recranker.errors import RecrankerError
from recranker.llm.config import SFTSettings
from recranker.llm.sft import split_eval, to_prompt_completion, train_sft


def records(n: int) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "task": "pointwise",
            "messages": [{"role": "system", "content": "You rate movies."},
                         {"role": "user", "content": f"The user watched film {i}. Rate film {i + 1} (1-5)."}],
            "completion": str(1 + i % 5),
        }
        for i in range(n)
    ]


def test_to_prompt_completion_shapes_trl_conversational_data():
    ex = to_prompt_completion(records(1)[0])
    assert ex["prompt"][-1]["role"] == "user"
    assert ex["completion"] == [{"role": "assistant", "content": "1"}]


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"messages": [], "completion": "1"}, "messages"),
        ({"messages": [{"role": "user"}], "completion": "1"}, "role' and 'content"),
        ({"messages": [{"role": "assistant", "content": "x"}], "completion": "1"}, "assistant turn"),
        ({"messages": [{"role": "user", "content": "x"}], "completion": ""}, "completion"),
    ],
)
def test_bad_records_name_their_location(bad, msg):
    with pytest.raises(RecrankerError, match=msg) as err:
        to_prompt_completion(bad, "train.jsonl:7")
    assert str(err.value).startswith("train.jsonl:7:")


def test_split_eval_is_seeded_and_disjoint():
    recs = records(40)
    a = split_eval(recs, 0.1, 3, seed=1)
    b = split_eval(recs, 0.1, 3, seed=1)
    assert a == b and len(a[1]) == 3 and len(a[0]) == 37
    assert not {r["id"] for r in a[0]} & {r["id"] for r in a[1]}
    assert split_eval(recs, 0.0, 3, seed=1)[1] == []


def settings(ckpt: Path, **kw) -> SFTSettings:
    base = {"max_steps": 4, "save_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 128, "lr": 5e-3,
            "warmup_steps": 1, "group_by_length": False}
    return SFTSettings(**{**base, **kw}).with_run(seed=3, checkpoint_dir=str(ckpt))


def adapter(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "adapter_model.safetensors")


def test_sft_lora_trains_completion_only_and_cleans_checkpoints(tiny_base, tmp_path):
    out = tmp_path / "sft"
    report = train_sft(tiny_base, records(10), records(2), out, settings(tmp_path / "ckpt"))
    assert report["steps"] == 4 and len(report["curve"]) == 4
    assert report["eval_loss"] is not None and report["n_eval"] == 2
    assert (out / "adapter_config.json").exists() and (out / "training_log.json").exists()
    assert (out / "tokenizer_config.json").exists()
    assert not (tmp_path / "ckpt").exists()  # removed on success
    # LoRA: only the adapter is trainable (r=8 on q,k,v,o of 2 layers of width 64)
    assert report["trainable_parameters"] == 2 * 4 * (8 * 64 + 64 * 8)
    w = adapter(out)
    assert any(v.abs().sum() > 0 for k, v in w.items() if "lora_B" in k)  # B starts at 0: it moved


class Interrupt(Exception):
    pass


def test_interrupted_sft_resumes_to_the_same_adapter(tiny_base, tmp_path):
    from transformers import TrainerCallback

    class StopAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 2:
                raise Interrupt

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        train_sft(tiny_base, records(10), [], tmp_path / "a", settings(ckpt), callbacks=[StopAfterSave()])
    assert (ckpt / "checkpoint-2").is_dir() and not (tmp_path / "a").exists()
    resumed = train_sft(tiny_base, records(10), [], tmp_path / "a", settings(ckpt))
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 4
    straight = train_sft(tiny_base, records(10), [], tmp_path / "b", settings(tmp_path / "ckpt2"))
    assert straight["resumed_from"] is None
    wa, wb = adapter(tmp_path / "a"), adapter(tmp_path / "b")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)


def test_full_fine_tuning_writes_a_full_model(tiny_base, tmp_path):
    report = train_sft(tiny_base, records(4), [], tmp_path / "full", settings(tmp_path / "c", method="full",
                                                                                max_steps=2, lr=1e-4))
    assert (tmp_path / "full" / "config.json").exists() and not (tmp_path / "full" / "adapter_config.json").exists()
    assert report["trainable_parameters"] > 3_000_000


def test_check_lengths_refuses_to_cut_answers(tok):
    from recranker.llm.sft import check_lengths

    short = {"id": "s", "task": "pointwise", "messages": [{"role": "user", "content": "Rate Heat."}],
             "completion": "4"}
    long = {"id": "l", "task": "listwise", "messages": [{"role": "user", "content": "film " * 200}],
            "completion": "A. Heat\nB. Fargo"}
    longest = check_lengths(tok, [short, long], 1000)
    assert 200 < longest < 1000
    assert check_lengths(tok, [short], 1000) < 64
    with pytest.raises(RecrankerError, match=r"max_length=64 would cut the answer of 1 of 2 instructions \(listwise"):
        check_lengths(tok, [short, long], 64)


def test_length_grouped_batches_keep_the_random_draw():
    """group_by_length changes how drawn examples are batched, never which are drawn: a short run
    sees the task mix random batches would (LengthGroupedSampler would front-load long ones)."""
    import numpy as np

    from recranker.llm.sft import length_grouped

    recs = [{"id": i, "task": "listwise" if i % 3 == 0 else "pointwise",
             "messages": [{"role": "user", "content": "x" * (600 if i % 3 == 0 else 250 + i % 7)}],
             "completion": "4"} for i in range(600)]
    out = length_grouped(recs, batch_size=4, n_examples=120, seed=5)
    drawn = np.random.default_rng(5).permutation(600)[:120]
    assert sorted(r["id"] for r in out) == sorted(drawn.tolist())
    batches = [out[s : s + 4] for s in range(0, 120, 4)]
    assert sum(len({r["task"] for r in b}) > 1 for b in batches) <= 1  # one mixed batch at most
    long_first = [b[0]["task"] == "listwise" for b in batches]
    assert long_first != sorted(long_first, reverse=True)  # long batches are not all first
    assert length_grouped(recs, 4, 120, 5) == out
    # more steps than records: whole shuffled passes, each record once per pass
    many = length_grouped(recs[:10], batch_size=4, n_examples=25, seed=1)
    assert len(many) == 25 and all(sum(r is x for x in many) >= 2 for r in recs[:10])


def test_instruction_mean_loss_weighs_every_answer_the_same(tiny_base, tmp_path):
    """`loss_average: instruction`: the batch loss is the mean of each answer's own token mean,
    i.e. of the losses each record has alone; trl's token mean lets the long answer dominate."""
    recs = records(3)
    recs[2]["completion"] = "A. Film one (1995)\nB. Film two (1996)\nC. Film three (1997)\nD. Film four"

    def first_loss(rs, **kw):
        cfg = settings(tmp_path / f"ckpt{len(kw)}{len(rs)}", max_steps=1, batch_size=len(rs), **kw)
        out = tmp_path / "m"
        return train_sft(tiny_base, rs, [], out, cfg)["curve"][0]["loss"]

    alone = [first_loss([r]) for r in recs]
    mean_of_answers = first_loss(recs, loss_average="instruction")
    assert mean_of_answers == pytest.approx(sum(alone) / 3, rel=1e-3)
    token_mean = first_loss(recs)
    assert abs(token_mean - mean_of_answers) > 1e-3


def test_training_progress_follows_a_real_trainer(tiny_base, tmp_path):
    """recranker.progress.training_progress in a real Trainer: a line per optimiser step (interval
    0 here) up to the last step, with the logged loss; a log gets no carriage returns."""
    import io

    from recranker.progress import training_progress

    log = io.StringIO()
    report = train_sft(tiny_base, records(10), [], tmp_path / "sft", settings(tmp_path / "ckpt"),
                       callbacks=[training_progress("sft", file=log, log_interval_s=0)])
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and lines[0].startswith("sft:")
    steps = report["steps"]
    assert f"{steps}/{steps}" in lines[-1] and "loss=" in lines[-1]
    assert len(lines) >= steps + 1  # the first line, then one per step
