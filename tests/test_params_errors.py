"""Bad hyper-parameters stop a stage with exit code 2 and one line naming the params.yaml key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_stage(cwd: Path, params_text: str | bytes, *argv: str, quiet: bool = True) -> str:
    """Run a stage; return its one error line (QUIET: nothing else on stderr, else the error line
    is the last one, after e.g. a progress bar of model loading)."""
    p = cwd / "params.yaml"
    if isinstance(params_text, bytes):
        p.write_bytes(params_text)
    else:
        p.write_text(params_text, encoding="utf-8")
    env = {**os.environ, "RECRANKER_PARAMS": str(p), "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "stages", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-2000:]
    assert len(lines) == 1 or not quiet, proc.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("evaluate:\n  ks: [3, 11]\n", "evaluate.ks.1: 11 is outside 1..10 (backbone.top_k)"),
        ("backbone:\n  top_k: 4\nevaluate:\n  ks: [3, 5]\n", "evaluate.ks.1: 5 is outside 1..4"),
        ("evaluate:\n  ks: [0]\n", "evaluate.ks.0: 0 is outside 1..10"),
        ("seed: -1\n", "seed: Input should be greater than or equal to 0"),
        ("datasets:\n  ml-100k: {format: ml-100k, seed: -3}\n", "datasets.ml-100k.seed: Input should be greater"),
        ("backbone:\n  mf: {lr: .inf}\n", "backbone.mf.lr: Input should be a finite number"),
        ("evaluate:\n  hybrid: {c1: .nan}\n", "evaluate.hybrid.c1: Input should be a finite number"),
        # sections declared by the library (recranker.sampling, recranker.prompts.config)
        ("sampling:\n  penalty: 1.5\n", "sampling.penalty: Input should be less than or equal to 1"),
        ("sampling:\n  n_importance: 0\n", "sampling.n_importance: Input should be greater than or equal to 1"),
        ("sampling:\n  embeddings: mf\n", "sampling.embeddings: unknown key"),
        ("instruct:\n  listwise_size: 27\n", "instruct.listwise_size: Input should be less than or equal to 26"),
        ("instruct:\n  listwise_liked: 6\n  listwise_disliked: 6\n",
         "instruct: Value error, listwise_liked + listwise_disliked must not exceed listwise_size"),
        ("instruct:\n  max_test_users: -1\n", "instruct.max_test_users: Input should be greater than or equal to 0"),
        # sections declared by the library (recranker.llm.config, recranker.dmpo.config, recranker.ranking.config)
        ("llm:\n  sft:\n    warmup_steps: -1\n", "llm.sft.warmup_steps: Input should be greater than or equal to 0"),
        ("llm:\n  sft:\n    lora: {dropout: 1.0}\n", "llm.sft.lora.dropout: Input should be less than 1"),
        ("llm:\n  sft:\n    max_eval: -2\n", "llm.sft.max_eval: Input should be greater than or equal to 0"),
        ("llm:\n  sft:\n    seed: 3\n", "llm.sft.seed: unknown key"),
        ("llm:\n  dmpo_sft:\n    max_length: 8\n", "llm.dmpo_sft.max_length: Input should be greater than or equal to 16"),
        ("llm:\n  dmpo_sft:\n    eval_steps: 5\n", "llm.dmpo_sft.eval_steps: unknown key"),
        ("llm:\n  dmpo:\n    beta: 0\n", "llm.dmpo.beta: Input should be greater than 0"),
        ("llm:\n  dmpo:\n    init: rlhf\n", "llm.dmpo.init: Input should be 'sft' or 'base'"),
        ("llm:\n  dmpo:\n    gradient_checkpointing: true\n", "llm.dmpo.gradient_checkpointing: unknown key"),
        ("preferences:\n  min_positives: 0\n", "preferences.min_positives: Input should be greater than or equal to 1"),
        ("preferences:\n  dataset: ml-100k\n", "preferences.dataset: unknown key"),
        ("evaluate:\n  hybrid: {a2: -0.5}\n", "evaluate.hybrid.a2: Input should be greater than or equal to 0"),
        ("evaluate:\n  hybrid: {c4: 1}\n", "evaluate.hybrid.c4: unknown key"),
        ("rank:\n  sampling: {top_p: 0}\n", "rank.sampling.top_p: Input should be greater than 0"),
        ("rank:\n  sampling: {seed: 1}\n", "rank.sampling.seed: unknown key"),
        ("rank:\n  openai: {top_logprobs: 21}\n", "rank.openai.top_logprobs: Input should be less than or equal to 20"),
    ],
)
def test_bad_params_name_the_key(tmp_path, text, expected):
    line = run_stage(tmp_path, text, "prepare", "--dataset", "ml-100k")
    assert expected in line and "params.yaml" in line


def test_non_utf8_params_file_is_one_line(tmp_path):
    line = run_stage(tmp_path, b"seed: 1\n# caf\xe9 latin-1\n", "prepare", "--dataset", "ml-100k")
    assert "params.yaml:2: not UTF-8 text (byte 0xe9)" in line


def test_unknown_lora_target_module_is_refused_naming_the_key(tmp_path, tiny_base):
    """Checked against the loaded model's module names, before any training step."""
    shutil.copytree(tiny_base, tmp_path / "models/base")
    train = tmp_path / "data/instructions/train/toy.jsonl"
    train.parent.mkdir(parents=True)
    row = {"id": "r0", "task": "pointwise", "completion": "4",
           "messages": [{"role": "user", "content": "Rate film 2 (1-5)."}]}
    train.write_text("".join(json.dumps({**row, "id": f"r{i}"}) + "\n" for i in range(4)))
    params = {"run": {"datasets": ["toy"]}, "datasets": {"toy": {"format": "ml-100k"}},
              "llm": {"sft": {"max_steps": 1, "batch_size": 2, "max_eval": 0, "eval_fraction": 0.0,
                              "lora": {"target_modules": ["q_proj", "qkv_projection"]}}}}
    line = run_stage(tmp_path, yaml.safe_dump(params), "sft", quiet=False)
    assert "llm.sft.lora.target_modules: 'qkv_projection' not in the model (its linear layers:" in line
    assert "q_proj" in line.split("linear layers:")[1]
    assert not (tmp_path / "models/llm/sft").exists()  # nothing half-written
