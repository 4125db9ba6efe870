"""The one-GPU check and the `gpu` extra's resolution check, as far as they run on a CPU: argument
handling, the stage plan, the shaped-model builder at a reduced size, the `--device cpu --tiny`
dry path, the reading of pip's resolution report (the dry run itself is slow: it asks PyPI)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check():
    return _script("gpu_check")


def test_arguments(gpu_check):
    args = gpu_check.parse_args([])
    assert args.device == "cuda" and args.stage_list == list(gpu_check.STAGES) and args.shape_list == ["1b", "7b"]
    assert gpu_check.parse_args(["--stages", "dmpo,zero3-full", "--device", "cuda:1"]).stage_list == [
        "dmpo", "zero3-full"]
    for bad in (["--stages", "sft"], ["--shapes", "13b"], ["--device", "tpu"], ["--device", "cpu"],
                ["--steps", "0"], ["--stages", ","]):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_stage_plan_runs_zero3_through_torchrun_with_the_shipped_config(gpu_check):
    plan = gpu_check.stage_commands(["rank-hf", "zero3-lora", "zero3-full", "sft-lora-bf16", "dmpo"])
    assert [name for name, _, _ in plan] == list(gpu_check.STAGES)  # dependencies first
    by = {name: (cmd, over) for name, cmd, over in plan}
    for name, method in (("zero3-full", "full"), ("zero3-lora", "lora")):
        cmd, over = by[name]
        assert cmd[:4] == [".venv/bin/torchrun", "--standalone", "--nproc_per_node", "1"]
        assert over == {"llm": {"deepspeed": "configs/deepspeed_zero3.json", "sft": {"method": method}}}
    assert (ROOT / "configs" / "deepspeed_zero3.json").is_file()
    assert by["rank-hf"][0][-1] == "rank" and gpu_check.TINY_PROJECT["llm"]["sft"]["bf16"] is True
    # The tiny profile's overrides are all real params keys.
    import yaml

    from stages.params import check_params

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for _, _, over in plan:
        merged = gpu_check._deep_update(gpu_check._deep_update(json.loads(json.dumps(params)),
                                                               gpu_check.TINY_PROJECT), over)
        check_params(merged, "gpu_check")


def test_shaped_models_have_the_published_shapes(tok):
    torch = pytest.importorskip("torch")
    from recranker.errors import RecrankerError
    from recranker.llm.shapes import parameter_count, shape_config, shaped_random_model

    c7 = shape_config(tok, "7b")
    assert (c7.hidden_size, c7.intermediate_size, c7.num_hidden_layers, c7.num_attention_heads) == (
        4096, 11008, 32, 32)
    c1 = shape_config(tok, "1b")
    assert (c1.hidden_size, c1.num_hidden_layers, c1.num_key_value_heads) == (2048, 22, 4)
    # Llama-2-7B has 6.74B parameters with its 32000-token vocabulary: the body is shape-exact.
    body = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096) + 4096
    assert body + 2 * 32000 * 4096 == pytest.approx(6.74e9, rel=1e-3)
    m = shaped_random_model(tok, "7b", layers=1, scale=16, dtype=torch.bfloat16, seed=3)
    assert m.dtype == torch.bfloat16 and m.config.hidden_size == 256
    assert parameter_count(m) == 2 * len(tok) * 256 + (4 * 256 * 256 + 3 * 256 * 688 + 2 * 256) + 256
    again = shaped_random_model(tok, "7b", layers=1, scale=16, dtype=torch.bfloat16, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), again.parameters()))
    with pytest.raises(RecrankerError, match="unknown model shape"):
        shape_config(tok, "70b")


def test_cpu_tiny_dry_path_writes_its_report(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--stages", "none", "--shapes", "1b", "--seq", "32", "--batch", "1", "--steps", "1",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    (shape,) = report["shapes"]
    assert shape["shape"] == "1b" and shape["reduced"] and shape["device"] == "cpu"
    assert shape["train_tokens_per_s"] > 0 and shape["score_candidates_per_s"] > 0
    assert shape["score_computed_tokens_per_s"] < shape["score_prompt_tokens_per_s"]  # prefix cached
    assert report["stages"] == [] and "1b (reduced)" in proc.stdout


def test_gpu_extra_report_is_checked_against_the_pins():
    check = _script("check_gpu_extra")
    pins = check.pins()
    assert pins["torch"] == "2.13.0" and pins["vllm"] == "0.32.0" and pins["deepspeed"]

    def report(**versions):
        return {"install": [{"metadata": {"name": n, "version": v}} for n, v in versions.items()]}

    ok = report(torch="2.13.0+cpu", vllm="0.32.0", deepspeed=pins["deepspeed"])
    assert check.check(ok, pins) == []
    assert check.check(report(torch="2.14.0", vllm="0.33.0", deepspeed=pins["deepspeed"]), pins) == [
        "torch: resolved 2.14.0, pinned 2.13.0", "vllm: resolved 0.33.0, pinned 0.32.0"]
    assert check.check(report(torch="2.13.0"), pins)[0] == "vllm: not in the resolution"


@pytest.mark.slow
def test_gpu_extra_resolves_with_the_pinned_torch():
    """`make check-gpu-extra`: pip resolves `-e '.[gpu]'` (a dry run from wheel metadata, ~3-5 min)."""
    proc = subprocess.run(["make", "check-gpu-extra", f"BIN={Path(sys.executable).parent}"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "vllm: 0.32.0 (pinned 0.32.0)" in proc.stdout and "torch: 2.13.0" in proc.stdout
