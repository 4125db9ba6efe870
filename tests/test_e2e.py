"""A tiny but real `dvc repro` of the whole graph in a temporary copy of the project.

Synthetic MovieLens-format data, a tiny randomly initialised LLM with the real tokenizer, a few
training steps: every stage runs for real, through DVC, through the `recranker` console script.
The copy runs the README's main command as a user types it: `.venv/bin/dvc repro` in the project
root, with nothing activated and no environment directory on PATH (`.venv` links to the test's
environment, as `make install` would have created it).
"""

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
BIN = Path(sys.executable).parent

TINY = {
    "run": {"datasets": ["tiny"], "backbones": ["mf"]},
    "datasets": {
        "tiny": {"format": "ml-100k", "path": "raw/tiny", "download": False,
                 "like_threshold": 4, "dislike_threshold": 2},
    },
    "backbone": {"patience": 2, "mf": {"dim": 16, "max_epochs": 5}},
    "sampling": {"n_users": 20, "n_clusters": 3},
    "preferences": {"n_train": 8, "n_valid": 4, "n_test": 8, "min_positives": 2, "min_negatives": 2,
                    "history_len": 8},
    "llm": {"base_model": "tiny-random",
            "sft": {"max_steps": 2, "batch_size": 2, "max_length": 768, "save_steps": 1, "max_eval": 4},
            "dmpo_sft": {"max_steps": 2, "batch_size": 2, "max_length": 512},
            "dmpo": {"max_steps": 2, "batch_size": 1, "grad_accum": 1, "max_length": 512, "valid_samples": 2},
            "pref_eval": {"max_samples": 4, "bootstrap": 20}},
    "rank": {"tasks": ["pointwise", "pairwise", "listwise"]},
}


def deep_update(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


def bare_env(**extra) -> dict:
    """The environment of a fresh shell: no virtualenv activated, no environment bin/ on PATH."""
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if d and Path(d).resolve() != BIN.resolve() and not (Path(d) / "recranker").exists())
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "RECRANKER_PARAMS", "PYTHONPATH"}}
    return {**env, "PATH": path, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
            **extra}


def make_project(work: Path, overrides: dict) -> None:
    """A copy of the project's pipeline files in WORK with params.yaml deep-updated by OVERRIDES."""
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "metrics/experiments.json"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, work / name)
    # the code the stages depend on (dvc.yaml lists it; the stages run the installed copy of it)
    for name in ("bin", "src", "stages", "benchmarks/results"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(deep_update(params, overrides), sort_keys=False))


DVC = ".venv/bin/dvc"  # exactly as the README says


def run(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    make_project(work, TINY)
    env = bare_env()
    run(["git", "init", "-q"], work, env)
    run(["git", "config", "user.email", "ci@example.invalid"], work, env)
    run(["git", "config", "user.name", "ci"], work, env)
    run([DVC, "init", "-q"], work, env)
    run([".venv/bin/recranker", "synth", "raw/tiny", "--users", "40", "--items", "60",
         "--ratings", "1500", "--seed", "0"], work, env)
    first = run([DVC, "repro"], work, env)
    return work, env, first


def test_repro_writes_metrics_in_unit_interval(project):
    work, _, _ = project
    metrics = json.loads((work / "metrics/evaluate/tiny/mf.json").read_text())
    flat = {}

    def walk(prefix, obj):
        for k, v in obj.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                flat[prefix + k] = v

    walk("", metrics)
    rates = {k: v for k, v in flat.items()
             if k.split(".")[-1].split("@")[0] in {"HR", "NDCG"} and "improvement" not in k}
    assert any(k.startswith("backbone") for k in rates) and any("pointwise" in k for k in rates)
    assert all(0.0 <= v <= 1.0 for v in rates.values()), rates


def test_second_repro_runs_nothing(project):
    work, env, _ = project
    out = run([DVC, "repro"], work, env)
    # only `raw` runs (always changed: it re-checks the source), and it changes nothing
    assert [ln for ln in out.splitlines() if "Running stage" in ln] == ["Running stage 'raw@tiny':"], out
    status = run([DVC, "status"], work, env)
    assert [ln.strip() for ln in status.splitlines() if ln.strip()] == ["raw@tiny:", "always changed"], status


def test_exp_run_in_a_temporary_copy(project):
    """`dvc exp run` (default --temp in `recranker exp`) runs the stages from a copy under .dvc/tmp,
    where there is no .venv of its own: bin/recranker must still find the project's."""
    work, env, _ = project
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-q", "-m", "tiny"], work, env)
    out = run([DVC, "exp", "run", "--temp", "-n", "c1-half", "-S", "evaluate.hybrid.c1=0.5"], work, env)
    assert "Running stage 'evaluate@tiny-mf'" in out and "Running stage 'sft'" not in out, out[-2000:]
    assert "c1-half" in run([DVC, "exp", "list"], work, env)


def test_same_params_give_the_same_bytes(project):
    """Re-training with the same params rewrites byte-identical backbone and SFT outputs (no
    timings, temp paths or pickles inside them), so nothing downstream looks changed."""
    work, env, _ = project

    def outs():
        lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
        # the DVC outputs proper and the backbone metrics `report` reads; only metrics/timings/
        # (read by no stage) may change, and sft's metrics are left out (its losses are floats
        # of a CPU run, not part of this claim)
        return {s: [o for o in lock[s]["outs"] if not o["path"].startswith(("metrics/timings/", "metrics/sft"))]
                for s in ("backbone@tiny-mf", "sft")}

    before = outs()
    run([DVC, "repro", "--force", "--single-item", "backbone@tiny-mf", "sft"], work, env)
    assert outs() == before
    assert not list((work / "models").rglob("*.bin")), "pickles among the outputs"


def test_recranker_params_rerun_nothing_on_the_dmpo_branch(project):
    work, env, _ = project
    params = yaml.safe_load((work / "params.yaml").read_text())
    original = (work / "params.yaml").read_text()
    params["llm"]["sft"]["lr"] = 0.001
    params["llm"]["sft"]["lora"]["r"] = 4
    params["instruct"]["history_len"] = 5
    try:
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        status = run([DVC, "status"], work, env)
    finally:
        (work / "params.yaml").write_text(original)
    assert "sft:" in status
    for stage in ("dmpo-sft:", "dmpo:", "pref-eval:", "preferences@"):
        assert stage not in status, status


# slow: ~45 s (a forced re-run of two stages)
@pytest.mark.slow
def test_default_run_benchmark_times_each_stage_with_its_memory_and_dtype(project, tmp_path):
    """benchmarks/default_run.py on this project: the stages asked for, in graph order, forced."""
    work, env, _ = project
    out = tmp_path / "default_run.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/default_run.py"), "--project", str(work),
                           "--stages", "rank@tiny-mf,prepare@tiny", "--force", "--out", str(out)],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [s["stage"] for s in result["stages"]] == ["prepare@tiny", "rank@tiny-mf"]  # graph order
    for s in result["stages"]:
        assert s["returncode"] == 0 and not s["skipped"] and s["seconds"] > 0
        assert s["peak_rss_tree_mb"] >= s["peak_rss_process_mb"] > 0
    rank = result["stages"][1]
    assert rank["precision"] == {"mf.json:dtype": result["cpu"]["auto_dtype"]}  # rank.dtype: auto, as it ran
    assert result["complete"] and "| rank@tiny-mf |" in proc.stdout
    status = json.loads(subprocess.run([DVC, "status", "--json"], cwd=work, env=env, capture_output=True,
                                       text=True, check=True).stdout)
    assert set(status) <= {"raw@tiny"}  # a forced re-run left the same bytes (raw@ is always re-checked)
