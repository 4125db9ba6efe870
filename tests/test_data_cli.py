"""`recranker synth` and `recranker prepare`, run for real in a temporary project folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

PARAMS = """\
seed: 42
run:
  datasets: [syn]
datasets:
  syn:
    format: ml-100k
    path: raw/syn
    kcore: {kcore}
"""


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RECRANKER_PARAMS", "RECRANKER_DATA")}
    env["WANDB_MODE"] = "disabled"
    return subprocess.run(
        [sys.executable, "-m", "stages", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def synth_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "params.yaml").write_text(PARAMS.format(kcore=2))
    res = _run(
        root,
        "synth",
        "raw/syn",
        "--users",
        "40",
        "--items",
        "60",
        "--ratings",
        "800",
        "--seed",
        "3",
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (root / "raw" / "syn").iterdir()) == ["u.data", "u.item"]
    return root


@pytest.fixture
def project(synth_project, tmp_path):
    """A fresh copy per test (tests edit the raw files and params)."""
    shutil.copytree(synth_project, tmp_path / "p")
    return tmp_path / "p"


def test_synth_then_prepare(project):
    res = _run(project, "prepare", "--dataset", "syn")
    assert res.returncode == 0, res.stderr
    out = project / "data" / "processed" / "syn"
    assert sorted(p.name for p in out.iterdir()) == [
        "id_map.parquet",
        "interactions.parquet",
        "items.parquet",
        "stats.json",
    ]
    inter = pd.read_parquet(out / "interactions.parquet")
    assert [str(t) for t in inter.dtypes] == ["int64", "int64", "float64", "int64", "str"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["format"] == "ml-100k" and stats["users"] == 40 and stats["ratings"] == len(inter)
    assert stats["splits"]["test"] == stats["splits"]["valid"] == 40
    assert stats["rating_scale"] == [1.0, 5.0] and stats["filtering"]["kcore"] == 2
    metrics = json.loads((project / "metrics" / "prepare" / "syn.json").read_text())
    assert metrics["users"] == 40 and metrics["n_test"] == 40
    items = pd.read_parquet(out / "items.parquet")
    assert list(items.columns) == ["item_id", "title", "year", "genres"]
    # Running again gives the same bytes (determinism end to end).
    before = (out / "interactions.parquet").read_bytes()
    assert _run(project, "prepare", "--dataset", "syn").returncode == 0
    assert (out / "interactions.parquet").read_bytes() == before


def test_failed_prepare_leaves_no_output(project):
    data = project / "raw" / "syn" / "u.data"
    lines = data.read_text().splitlines()
    lines[6] = "1\t2\tfive\t874965478"
    data.write_text("\n".join(lines) + "\n")
    res = _run(project, "prepare", "--dataset", "syn")
    assert res.returncode == 2
    err = res.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert "u.data:7: rating 'five' is not a number" in err
    assert not (project / "data" / "processed").exists()
    assert not (project / "metrics").exists()


def test_bad_params_and_unknown_dataset(project):
    (project / "params.yaml").write_text(PARAMS.format(kcore=2) + "    like_threshold: 1.5\n")
    res = _run(project, "prepare", "--dataset", "syn")
    assert res.returncode == 2 and "datasets.syn" in res.stderr and "like_threshold" in res.stderr
    (project / "params.yaml").write_text(PARAMS.format(kcore=2))
    res = _run(project, "prepare", "--dataset", "nope")
    assert res.returncode == 2 and "unknown dataset 'nope'" in res.stderr
    assert not (project / "data" / "processed").exists()


def test_dataset_params_validation():
    from pydantic import ValidationError

    from stages.params.data import DatasetParams

    assert DatasetParams(format="bookcrossing", like_threshold=6, dislike_threshold=4).kcore == 0
    for bad in (
        {"format": "ml-100k", "like_threshold": 3, "dislike_threshold": 3},
        {"format": "ml-1m", "like_threshold": 6},  # outside 1..5
        {"format": "ml-100k", "include_implicit": True},
        {"format": "bookcrossing", "category": "Books"},
        {"format": "ml-100k", "min_interactions": 2},
        {"format": "ml-100k", "kcore": -1},
        {"format": "netflix"},
        {"format": "ml-100k", "kcor": 5},  # unknown key
    ):
        with pytest.raises(ValidationError):
            DatasetParams(**bad)
