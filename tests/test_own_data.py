"""Users' own data through real `dvc repro` runs in temporary copies of the project (as
tests/test_e2e.py): RecBole atomic files through prepare → backbone → sample → instruct, and the
DMPO branch on LLaMA-Factory files alone (no ML-100K anywhere, `run.datasets: []`), including a
`dvc exp run --temp` copy."""

from __future__ import annotations

import json

import pytest
from test_e2e import DVC, TINY, bare_env, make_project, run


def init(work, env):
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.invalid"],
                ["git", "config", "user.name", "ci"], [DVC, "init", "-q"]):
        run(cmd, work, env)


def no_ml100k_env():
    env = bare_env()
    env.pop("RECRANKER_DATA", None)
    return env


def test_recbole_atomic_dataset_runs_to_instructions(tmp_path):
    work = tmp_path / "rb"
    work.mkdir()
    make_project(work, {"run": {"datasets": ["atomic"], "backbones": ["mf"]},
                        "datasets": {"atomic": {"format": "recbole", "path": "raw/atomic", "rating_scale": [1, 5],
                                                "kcore": 2, "like_threshold": 4, "dislike_threshold": 2}},
                        "backbone": TINY["backbone"], "sampling": TINY["sampling"]})
    env = no_ml100k_env()
    init(work, env)
    run([".venv/bin/recranker", "synth", "raw/atomic", "--format", "recbole", "--name", "atomic",
         "--users", "40", "--items", "60", "--ratings", "1500", "--seed", "0"], work, env)
    out = run([DVC, "repro", "instruct@atomic"], work, env)
    for stage in ("prepare@atomic", "backbone@atomic-mf", "sample@atomic", "instruct@atomic"):
        assert f"Running stage '{stage}'" in out
    stats = json.loads((work / "data/processed/atomic/stats.json").read_text())
    assert stats["format"] == "recbole" and stats["users"] == 40 and stats["has_timestamps"]
    titles = {ln.split("\t")[1] for ln in (work / "raw/atomic/atomic.item").read_text().splitlines()[1:]}
    prompts = (work / "data/instructions/train/atomic.jsonl").read_text(encoding="utf-8")
    assert sum(t in prompts for t in titles) > 10  # the .item titles are what the prompts show
    assert "up to date" in run([DVC, "status", "instruct@atomic"], work, env)


def test_recbole_without_ratings_stops_at_prepare_naming_the_column(tmp_path):
    from recranker.data import read_raw
    from recranker.data.synthetic import write_recbole_atomic
    from recranker.errors import DataFormatError

    inter, _ = write_recbole_atomic(tmp_path, "implicit", 10, 20, 100)
    lines = inter.read_text().splitlines()
    inter.write_text("\n".join("\t".join(c for i, c in enumerate(ln.split("\t")) if i != 2) for ln in lines) + "\n")
    with pytest.raises(DataFormatError, match=r"implicit\.inter:1: no 'rating:float' column \(implicit feedback "
                                              r"is not supported"):
        read_raw("recbole", tmp_path)


DMPO_ALONE = {
    "run": {"datasets": [], "backbones": ["mf"]},
    "preferences": {"imported": {"authors": {"path": "authors", "train": "dpo_ranking_2.json", "k": 2,
                                             "test": "test.json", "valid": "valid.json", "sft": "sft.json"}}},
    "llm": {**TINY["llm"],
            "dmpo": {**TINY["llm"]["dmpo"], "datasets": ["authors"], "k": 2},
            "pref_eval": {**TINY["llm"]["pref_eval"], "datasets": ["authors"], "explain_samples": 1}},
}


# slow: ~2 min (the whole DMPO branch through DVC); tests/test_e2e.py runs the branch on ratings data in the fast suite
@pytest.mark.slow
def test_dmpo_branch_on_an_imported_dataset_alone(tmp_path):
    work = tmp_path / "lf"
    work.mkdir()
    make_project(work, DMPO_ALONE)
    env = no_ml100k_env()
    init(work, env)
    run([".venv/bin/recranker", "synth", "authors", "--format", "llama-factory", "--users", "8", "--k", "2"],
        work, env)
    out = run([DVC, "repro", "pref-eval"], work, env)
    for stage in ("import-preferences@authors", "base-model", "dmpo-sft", "dmpo", "pref-eval"):
        assert f"Running stage '{stage}'" in out
    assert "Running stage 'prepare@" not in out and "Running stage 'preferences@" not in out
    metrics = json.loads((work / "metrics/pref_eval.json").read_text())
    assert set(metrics) == {"authors"} and metrics["authors"]["domain"] == "in-domain"
    stats = json.loads((work / "metrics/preferences/authors.json").read_text())
    assert stats["train"]["pairs_per_sample"] == {"2": 8} and stats["train"]["histories"] == 8
    # a recipe-style experiment in a temporary copy sees the imported data (its stage, its folder)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-q", "-m", "imported"], work, env)
    exp = run([DVC, "exp", "run", "--temp", "-n", "no-explain", "-S", "llm.pref_eval.explain_samples=0", "pref-eval"],
              work, env)
    assert "Running stage 'pref-eval'" in exp and "Running stage 'dmpo'" not in exp, exp[-2000:]
    # editing a source file re-runs its import (the folder is the stage's dependency)
    test_file = work / "authors/test.json"
    recs = json.loads(test_file.read_text(encoding="utf-8"))
    test_file.write_text(json.dumps(recs[:50], ensure_ascii=False), encoding="utf-8")
    assert "import-preferences@authors" in run([DVC, "status"], work, env)
