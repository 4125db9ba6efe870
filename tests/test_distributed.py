"""Training on several processes, for real: torchrun ranks with gloo on this CPU, a tiny model.

What must hold (issue: scale-out): one rank publishes the output and it holds the weights; the
same seed and global batch give the same losses and weights on 1 and on 2 processes; the params
knob ``llm.launch`` makes plain ``dvc repro`` train on several processes. Tolerances: losses
within 1e-5 relative and LoRA weights within 1e-5 (SFT) / 1e-4 (DMPO, whose reference log-probs
are summed in another order): all-reduced gradients differ from one process's only by float
summation order. Adapter dropout is 0 here: its masks come from each rank's own RNG stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "train_child.py"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"}}
    return {**env, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def _train(kind: str, processes: int, work: Path, base: Path, start: Path | None = None, *,
           zero3: bool = False, **settings) -> dict:
    """Train KIND on PROCESSES ranks with a global batch of 4 (1 per rank and micro-batch);
    ``zero3``: under DeepSpeed ZeRO-3 (configs/deepspeed_zero3.json) on its CPU accelerator."""
    name = f"{kind}{processes}{'-zero3' if zero3 else ''}{'-' + settings['method'] if 'method' in settings else ''}"
    out = work / name
    if zero3:
        settings["deepspeed"] = str(ROOT / "configs" / "deepspeed_zero3.json")
    flat = {"max_steps": 3, "lr": 1e-3, "warmup_steps": 0, "batch_size": 1, "grad_accum": 4 // processes,
            "max_length": 256, "save_steps": 100, "bf16": False, "seed": 0, **settings}
    if kind == "sft":
        flat |= {"group_by_length": True, "lora": {"dropout": 0.0}}
    spec = {"base": str(base), "sft": str(start), "out": str(out), "settings": flat, "report": f"{out}.json"}
    spec_file = work / f"{name}.spec.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, str(CHILD), kind, str(spec_file)]
    if processes > 1 or zero3:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *cmd[1:]]
    env = _env(DS_ACCELERATOR="cpu") if zero3 else _env()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return {"report": json.loads(Path(f"{out}.json").read_text()), "out": out}


def _adapter(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


def _same_training(one: dict, two: dict, weight_tol: float) -> None:

    l1 = [p["loss"] for p in one["report"]["curve"]]
    l2 = [p["loss"] for p in two["report"]["curve"]]
    assert len(l1) == len(l2) == 3
    assert l1 == pytest.approx(l2, rel=1e-5)
    a, b = _adapter(one["out"]), _adapter(two["out"])
    assert a.keys() == b.keys() and a
    assert all(t.numel() > 0 for t in b.values()), "rank 0 published empty tensors"
    assert max((a[k] - b[k]).abs().max().item() for k in a) < weight_tol
    assert any(t.abs().max().item() > 10 * weight_tol for t in b.values())  # the adapter really trained
    assert one["report"]["trainable_parameters"] == two["report"]["trainable_parameters"] > 0


@pytest.fixture(scope="module")
def sft_runs(tiny_base, tmp_path_factory):
    work = tmp_path_factory.mktemp("dist")
    return work, _train("sft", 1, work, tiny_base), _train("sft", 2, work, tiny_base)


def test_sft_on_two_processes_equals_one(sft_runs):
    _, one, two = sft_runs
    _same_training(one, two, weight_tol=1e-5)
    assert not (two["out"] / "training_args.bin").exists()
    assert (two["out"] / "tokenizer_config.json").is_file() and (two["out"] / "training_log.json").is_file()


@pytest.mark.slow
def test_dmpo_on_two_processes_equals_one(sft_runs, tiny_base):
    """precompute_ref (the default) on two ranks: one reference cache all ranks read."""
    work, sft_one, _ = sft_runs
    one = _train("dmpo", 1, work, tiny_base, sft_one["out"], beta=0.1, precompute_ref=True)
    two = _train("dmpo", 2, work, tiny_base, sft_one["out"], beta=0.1, precompute_ref=True)
    _same_training(one, two, weight_tol=1e-4)
    assert not (two["out"] / "ref").exists()  # trl's frozen reference copy is not published


# -- DeepSpeed ZeRO-3 (one rank: accelerate treats DeepSpeed ranks as a CPU run only on GPUs) -------


@pytest.fixture(scope="module")
def deepspeed():
    return pytest.importorskip("deepspeed", reason="DeepSpeed (`make install` has it) runs ZeRO-3 on its CPU accelerator")


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def test_zero3_full_finetune_saves_the_gathered_weights(deepspeed, sft_runs, tiny_base):
    """The weights a ZeRO-3 rank holds are an empty partition: the saved model must be gathered."""
    work, _, _ = sft_runs
    plain = _train("sft", 1, work, tiny_base, method="full")
    zero3 = _train("sft", 1, work, tiny_base, zero3=True, method="full")
    a, b = _weights(plain["out"]), _weights(zero3["out"])
    assert a.keys() == b.keys() and all(t.numel() > 0 for t in b.values())
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert [p["loss"] for p in plain["report"]["curve"]] == pytest.approx(
        [p["loss"] for p in zero3["report"]["curve"]], rel=1e-5)
    assert zero3["report"]["trainable_parameters"] == plain["report"]["trainable_parameters"] > 0


@pytest.mark.slow
def test_zero3_lora_and_dmpo(deepspeed, sft_runs, tiny_base):
    work, sft_one, _ = sft_runs
    _same_training(sft_one, _train("sft", 1, work, tiny_base, zero3=True), weight_tol=1e-5)
    one = _train("dmpo", 1, work, tiny_base, sft_one["out"], beta=0.1)
    _same_training(one, _train("dmpo", 1, work, tiny_base, sft_one["out"], zero3=True, beta=0.1), weight_tol=1e-4)


# -- the launcher ---------------------------------------------------------------------------------


def test_launch_command_torchrun_and_accelerate(tmp_path, monkeypatch):
    from recranker.errors import RecrankerError
    from recranker.llm.launch import launch_command, needs_launch

    cmd = launch_command(["stages", "sft"], 4, python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m", "stages", "sft"]
    cfg = tmp_path / "acc.yaml"
    cfg.write_text("distributed_type: DEEPSPEED\n")
    cmd = launch_command(["stages", "dmpo"], 8, str(cfg), python="py")
    assert cmd[:4] == ["py", "-m", "accelerate.commands.launch", "--config_file"]
    assert cmd[-5:] == ["--num_processes", "8", "-m", "stages", "dmpo"]
    with pytest.raises(RecrankerError, match="llm.launch.config"):
        launch_command(["stages", "sft"], 2, str(tmp_path / "missing.yaml"))
    with pytest.raises(RecrankerError, match="starts one process"):  # accelerate's silent single process
        launch_command(["stages", "sft"], 2, str(ROOT / "configs" / "accelerate_cpu.yaml"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert needs_launch(2) and not needs_launch(1)
    monkeypatch.setenv("WORLD_SIZE", "2")  # inside a rank: never launch again
    assert not needs_launch(2)


def _two_rank_project(tmp_path_factory):
    from test_e2e import DVC, TINY, bare_env, deep_update, make_project, run

    work = tmp_path_factory.mktemp("launch")
    make_project(work, deep_update(json.loads(json.dumps(TINY)), {"llm": {"launch": {"processes": 2}}}))
    env = bare_env(OMP_NUM_THREADS="1")
    run(["git", "init", "-q"], work, env)
    run([DVC, "init", "-q"], work, env)
    run([".venv/bin/recranker", "synth", "raw/tiny", "--users", "40", "--items", "60",
         "--ratings", "1500", "--seed", "0"], work, env)
    return work, env


def _trained_on_two_ranks(work: Path, stages: list[tuple[str, str]]) -> None:
    from safetensors.torch import load_file

    for stage, metrics in stages:
        weights = load_file(str(work / "models" / "llm" / stage / "adapter_model.safetensors"))
        assert weights and all(t.numel() > 0 for t in weights.values()), stage
        launch = json.loads((work / "metrics" / f"{metrics}.json").read_text())["launch"]
        assert launch["processes"] == 2 and launch["launcher"] == "torchrun" and launch["backend"] == "gloo"
    assert not [p for p in (work / "models" / "llm").iterdir() if p.name.startswith(".")
                and p.name != ".ckpt"], "a rank's temporary was left behind"


def test_dvc_repro_trains_the_dmpo_branch_on_two_processes(tmp_path_factory):
    """`llm.launch.processes: 2` and plain `dvc repro`: dmpo-sft and dmpo each run as two gloo
    ranks (the stage relaunches itself), publish non-empty weights once, record the launch, and
    the valid AUC inside them is computed once, on rank 0."""
    from test_e2e import DVC, run

    work, env = _two_rank_project(tmp_path_factory)
    out = run([DVC, "repro", "dmpo"], work, env)
    assert out.count("launch: 2 processes") == 2
    _trained_on_two_ranks(work, [("dmpo-sft", "dmpo_sft"), ("dmpo", "dmpo")])
    assert json.loads((work / "metrics" / "dmpo.json").read_text())["valid_samples"] > 0


@pytest.mark.slow
def test_dvc_repro_trains_sft_on_two_processes(tmp_path_factory):
    """The same for RecRanker's `sft` (slow: it needs the backbone and the instructions first)."""
    from test_e2e import DVC, run

    work, env = _two_rank_project(tmp_path_factory)
    assert "launch: 2 processes" in run([DVC, "repro", "sft"], work, env)
    _trained_on_two_ranks(work, [("sft", "sft")])


# -- chat templates and environment-independent bytes ----------------------------------------------


def test_llama2_template_for_a_base_model_without_one(tiny_base):
    from recranker.llm.model import load_tokenizer

    tok = load_tokenizer(str(tiny_base), chat_template="llama-2")
    prompt = [{"role": "system", "content": "You rank films."}, {"role": "user", "content": "Film A or B?"}]
    answer = [{"role": "assistant", "content": "Film A"}]
    head = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(prompt + answer, tokenize=False)
    assert head.endswith("[/INST]") and "<<SYS>>\nYou rank films.\n<</SYS>>\n\nFilm A or B?" in head
    assert full.startswith(head) and full.endswith(f" Film A {tok.eos_token}")  # completion-only needs a prefix


def test_unknown_chat_template_is_one_line(tiny_base):
    from recranker.errors import RecrankerError
    from recranker.llm.model import load_tokenizer

    with pytest.raises(RecrankerError, match=r"llm.chat_template: 'vicuna' is neither a shipped template \(llama-2\)"):
        load_tokenizer(str(tiny_base), chat_template="vicuna")


def test_base_model_bytes_do_not_depend_on_hf_hub_offline(tmp_path):
    """transformers records how a tokenizer was loaded (local_files_only follows HF_HUB_OFFLINE);
    the saved base model must be the same bytes whichever way the shell is set."""
    code = "import sys; from recranker.llm.model import make_tiny_base; make_tiny_base(sys.argv[1], seed=0)"
    outs = {}
    for name, offline in (("offline", {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}), ("online", {})):
        env = {k: v for k, v in _env().items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}} | offline
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], env=env, check=True, timeout=300)
        outs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
    assert outs["offline"].keys() == outs["online"].keys()
    assert [n for n in outs["offline"] if outs["offline"][n] != outs["online"][n]] == []
    assert b"local_files_only" not in outs["online"]["tokenizer_config.json"]
