"""Issue 28 under real DVC: raw data is a dependency of `prepare`, and a stage killed during
`dvc repro` leaves its previous outputs in place (every out is `persist: true`; the stage replaces
each by a rename only once it is complete)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = ".venv/bin/dvc"


def env() -> dict:
    keep = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "RECRANKER_PARAMS", "RECRANKER_DATA"}}
    return {**keep, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1"}


def sh(cwd: Path, *cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def project(work: Path, **dataset) -> Path:
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    for name in ("bin", "src", "stages"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    write_params(work, **dataset)
    sh(work, "git", "init", "-q")
    sh(work, DVC, "init", "-q")
    sh(work, ".venv/bin/recranker", "synth", "raw/tiny", "--users", "40", "--items", "60", "--ratings", "1500")
    return work


def write_params(work: Path, **dataset) -> None:
    params = {"run": {"datasets": ["tiny"], "backbones": ["mf"]},
              "datasets": {"tiny": {"format": "ml-100k", "path": "raw/tiny", "download": False, **dataset}},
              # dvc.yaml's import-preferences stage loops over this key: DVC needs it present
              "preferences": {"imported": {}}}
    (work / "params.yaml").write_text(yaml.safe_dump(params))


def stale(work: Path) -> str:
    return sh(work, DVC, "status")


def test_a_raw_file_edit_makes_prepare_stale(tmp_path):
    """The finding: 100 rows removed from the raw u.data, and `dvc status` said up to date. Now
    `raw` (always changed: DVC cannot see $RECRANKER_DATA or a path outside the project) copies
    the source into data/raw/tiny/, a dependency of `prepare`; an unchanged source re-runs nothing."""
    work = project(tmp_path)
    sh(work, DVC, "repro", "prepare@tiny")
    assert "prepare@tiny" not in stale(work)
    out = sh(work, DVC, "repro", "prepare@tiny")  # same source: raw runs, prepare does not
    assert "Running stage 'raw@tiny'" in out and "Running stage 'prepare@tiny'" not in out, out
    ratings = work / "raw/tiny/u.data"
    ratings.write_text("".join(ratings.read_text().splitlines(True)[100:]))  # remove 100 rows
    sh(work, DVC, "repro", "raw@tiny")
    status = stale(work)
    assert "prepare@tiny" in status and "data/raw/tiny" in status, status
    (work / "data/raw/tiny/u.item").write_bytes(b"")  # an edit of the copy is seen as well
    assert "data/raw/tiny" in stale(work)
    out = sh(work, DVC, "repro", "prepare@tiny")  # the source wins: the copy is restored from it
    assert "Running stage 'prepare@tiny'" in out and "prepare@tiny" not in stale(work)


def _child_pids(root: int) -> list[int]:
    """Every descendant of ROOT (from /proc)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_killed_stage_leaves_its_previous_outputs(tmp_path):
    """The finding: `kill -9` of `dvc repro` mid-stage left the stage's outputs empty (DVC removes
    outputs before running a stage). With persist: true they stay until the stage's own atomic
    rename replaces them; the next `dvc repro` runs the stage again and completes."""
    work = project(tmp_path)
    sh(work, DVC, "repro", "prepare@tiny")
    out = work / "data/processed/tiny"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    metrics_before = (work / "metrics/prepare/tiny.json").read_bytes()
    write_params(work, min_interactions=20)  # the re-run would write other data
    proc = subprocess.Popen([DVC, "repro", "prepare@tiny"], cwd=work, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any("recranker prepare" in _cmdline(c) or "stages prepare" in _cmdline(c) for c in _child_pids(proc.pid)):
            break  # the stage's command has started: DVC has done what it does before a stage
        time.sleep(0.02)
    assert proc.poll() is None, "dvc repro finished before the stage could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (work / "metrics/prepare/tiny.json").read_bytes() == metrics_before
    assert "prepare@tiny" in stale(work)  # dvc.lock still describes the old run
    sh(work, DVC, "repro", "prepare@tiny")
    assert {p.name: p.read_bytes() for p in out.iterdir()} != before
    assert "prepare@tiny" not in stale(work)
