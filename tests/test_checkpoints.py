"""Checkpoints: a broken one is set aside, another run's is not resumed, and a training process
killed (``kill -9``) mid-step or mid-save resumes to the same adapter bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recranker.llm.checkpoints import FINGERPRINT, resume_point

CHILD = Path(__file__).with_name("train_child.py")


# ------------------------------------------------------------------ resume_point, no training
def fake_checkpoint(d: Path, step: int, complete: bool = True) -> Path:
    """The files a Trainer checkpoint holds, real but tiny (torch zip archives, safetensors)."""
    import torch
    from safetensors.torch import save_file

    ck = d / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    save_file({"lora_A": torch.zeros(2, 2)}, str(ck / "adapter_model.safetensors"))
    torch.save({"state": {0: {"exp_avg": torch.ones(64, 64)}}, "param_groups": []}, ck / "optimizer.pt")
    torch.save({"last_epoch": step}, ck / "scheduler.pt")
    if complete:
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ck


def test_resume_point_takes_newest_complete_and_sets_aside_broken(tmp_path):
    fp = {"lr": 1}
    assert resume_point(tmp_path, fp) is None  # stamps the directory
    fake_checkpoint(tmp_path, 2)
    fake_checkpoint(tmp_path, 4, complete=False)
    said = []
    assert resume_point(tmp_path, fp, say=said.append) == str(tmp_path / "checkpoint-2")
    assert (tmp_path / "broken-checkpoint-4").is_dir() and not (tmp_path / "checkpoint-4").exists()
    assert "no trainer_state.json" in said[0] and "set aside" in said[0] and "resuming" in said[1]
    assert all("\n" not in s for s in said)


def test_resume_point_starts_fresh_on_other_params_or_no_fingerprint(tmp_path):
    assert resume_point(tmp_path, {"lr": 1}) is None
    fake_checkpoint(tmp_path, 2)
    said = []
    assert resume_point(tmp_path, {"lr": 2}, say=said.append) is None
    assert not (tmp_path / "checkpoint-2").exists() and "starting fresh" in said[0]
    (tmp_path / FINGERPRINT).unlink()  # checkpoints of unknown origin (e.g. an older version)
    fake_checkpoint(tmp_path, 2)
    assert resume_point(tmp_path, {"lr": 2}, say=said.append) is None
    assert not (tmp_path / "checkpoint-2").exists()


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "adapter_model.safetensors"])
def test_checkpoint_whose_file_does_not_load_is_set_aside(tmp_path, name):
    """The finding: a checkpoint that looked complete but had a truncated optimizer.pt was resumed
    from on every re-run (a PytorchStreamReader traceback each time, stuck until deleted by hand).
    Its files are checked without unpickling; it is set aside and the older good one resumed."""
    fp = {"lr": 1}
    resume_point(tmp_path, fp)
    fake_checkpoint(tmp_path, 2)
    bad = fake_checkpoint(tmp_path, 4) / name
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # cut short, as by a full disk
    said = []
    assert resume_point(tmp_path, fp, say=said.append) == str(tmp_path / "checkpoint-2")
    assert (tmp_path / "broken-checkpoint-4").is_dir()
    assert f"{name} does not load" in said[0] and "set aside" in said[0] and "\n" not in said[0]


def test_resume_point_rejects_a_state_of_another_step(tmp_path):
    resume_point(tmp_path, {})
    ck = fake_checkpoint(tmp_path, 6)
    (ck / "trainer_state.json").write_text('{"global_step": 4')  # truncated write
    assert resume_point(tmp_path, {}, say=lambda s: None) is None
    assert (tmp_path / "broken-checkpoint-6").is_dir()


# ------------------------------------------------------------------ real training, real kill -9
def _spec(tmp_path: Path, name: str, base: Path, sft: Path | None, **settings) -> Path:
    spec = {"base": str(base), "sft": str(sft) if sft else None, "out": str(tmp_path / name / "out"),
            "settings": {**settings, "checkpoint_dir": str(tmp_path / name / "ckpt")}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def _killed_at(kind: str, spec: Path, hook: str, timeout: float = 300) -> None:
    """Run the child until it reaches ``hook``, then ``kill -9`` it there."""
    marker = spec.with_suffix(".at")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(CHILD), kind, str(spec), hook, str(marker)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"child ended before {hook}: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                pytest.fail(f"child did not reach {hook} in {timeout} s")
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _run(kind: str, spec: Path) -> tuple[dict, bytes]:
    import torch

    sys.path.insert(0, str(CHILD.parent))
    try:
        from train_child import run
    finally:
        sys.path.remove(str(CHILD.parent))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child (OMP_NUM_THREADS=1): same reductions, same bytes
    try:
        report = run(kind, json.loads(spec.read_text()))
    finally:
        torch.set_num_threads(threads)
    out = Path(json.loads(spec.read_text())["out"])
    return report, (out / "adapter_model.safetensors").read_bytes()


SFT = {"seed": 3, "max_steps": 6, "save_steps": 2, "batch_size": 2, "grad_accum": 1, "max_length": 128,
       "lr": 5e-3, "warmup_steps": 1, "group_by_length": False}
DMPO = {"seed": 0, "k": 3, "max_steps": 6, "save_steps": 2, "batch_size": 2, "max_length": 96, "lr": 1e-2,
        "warmup_steps": 0, "grad_accum": 1, "bf16": False}


@pytest.fixture(scope="module")
def sft_adapter(tiny_base, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ck-sft")
    report, _ = _run("sft", _spec(d, "s", tiny_base, None, **{**SFT, "max_steps": 2}))
    assert report["steps"] == 2
    return d / "s" / "out"


def test_sft_killed_mid_step_resumes_to_the_same_bytes(tiny_base, tmp_path):
    _, straight = _run("sft", _spec(tmp_path, "a", tiny_base, None, **SFT))
    spec = _spec(tmp_path, "b", tiny_base, None, **SFT)
    _killed_at("sft", spec, "step:4")  # checkpoint-2 is complete, step 4 under way
    report, resumed = _run("sft", spec)
    assert report["resumed_from"] == "checkpoint-2" and report["steps"] == 6
    assert resumed == straight


@pytest.mark.slow
def test_sft_killed_mid_save_sets_it_aside_and_resumes_to_the_same_bytes(tiny_base, tmp_path, capfd):
    _, straight = _run("sft", _spec(tmp_path, "a", tiny_base, None, **SFT))
    spec = _spec(tmp_path, "b", tiny_base, None, **SFT)
    _killed_at("sft", spec, "save:4")
    ck = tmp_path / "b" / "ckpt"
    assert (ck / "checkpoint-4").is_dir() and not (ck / "checkpoint-4" / "trainer_state.json").exists()
    report, resumed = _run("sft", spec)
    assert "checkpoint-4: incomplete checkpoint (no trainer_state.json)" in capfd.readouterr().err
    assert report["resumed_from"] == "checkpoint-2"
    assert resumed == straight


@pytest.mark.slow
def test_sft_with_another_lr_after_a_kill_starts_fresh(tiny_base, tmp_path, capfd):
    _, fresh = _run("sft", _spec(tmp_path, "a", tiny_base, None, **{**SFT, "lr": 1e-3}))
    _killed_at("sft", _spec(tmp_path, "b", tiny_base, None, **SFT), "step:4")
    report, after = _run("sft", _spec(tmp_path, "b", tiny_base, None, **{**SFT, "lr": 1e-3}))
    assert "other training params or data; starting fresh" in capfd.readouterr().err
    assert report["resumed_from"] is None
    assert after == fresh


@pytest.mark.slow
def test_dmpo_killed_mid_step_resumes_to_the_same_bytes(tiny_base, sft_adapter, tmp_path):
    _, straight = _run("dmpo", _spec(tmp_path, "a", tiny_base, sft_adapter, **DMPO))
    spec = _spec(tmp_path, "b", tiny_base, sft_adapter, **DMPO)
    _killed_at("dmpo", spec, "step:4")
    report, resumed = _run("dmpo", spec)
    assert report["resumed_from"] == "checkpoint-2" and report["steps"] == 6
    assert resumed == straight


@pytest.mark.slow
def test_dmpo_killed_mid_save_then_another_lr(tiny_base, sft_adapter, tmp_path, capfd):
    _, straight = _run("dmpo", _spec(tmp_path, "a", tiny_base, sft_adapter, **DMPO))
    spec = _spec(tmp_path, "b", tiny_base, sft_adapter, **DMPO)
    _killed_at("dmpo", spec, "save:4")
    report, resumed = _run("dmpo", spec)
    assert "incomplete checkpoint" in capfd.readouterr().err
    assert report["resumed_from"] == "checkpoint-2" and resumed == straight

    _, fresh = _run("dmpo", _spec(tmp_path, "c", tiny_base, sft_adapter, **{**DMPO, "lr": 2e-3}))
    _killed_at("dmpo", spec, "step:4")
    report, after = _run("dmpo", _spec(tmp_path, "b", tiny_base, sft_adapter, **{**DMPO, "lr": 2e-3}))
    assert report["resumed_from"] is None and after == fresh
