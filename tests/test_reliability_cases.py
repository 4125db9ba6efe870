"""Issue 28: the 28 cases of the second bad-input and fault campaign that were not a clear error.

Each ends in one line naming the file/line or params key (exit code 2), or in a correct result.
Covered elsewhere: the server cases (tests/test_serve.py, "issue 28"), a checkpoint whose files
do not load (tests/test_checkpoints.py), raw data as a DVC dependency and a killed `dvc repro`
(tests/test_dvc_reliability.py), byte-identical re-runs (tests/test_e2e.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from test_params_errors import run_stage

from recranker.errors import RecrankerError
from recranker.io import atomic_path, atomic_paths, finish_interrupted_swaps, write_jsonl

GOOD = "run: {datasets: [ml-100k]}\ndatasets: {ml-100k: {format: ml-100k}}\n"


# ------------------------------------------------------------------ params: strict, no silent defaults
@pytest.mark.parametrize("text, expected", [
    ("seed: true\n", "seed: must be an integer, not the boolean true (no conversion)"),
    ("backbone:\n  mf: {dim: '16'}\n", "backbone.mf.dim: must be an integer, not the string '16'"),
    ("backbone:\n  mf: {lr: '0.01'}\n", "backbone.mf.lr: must be a number, not the string '0.01'"),
    ("seed: 1\nrun: {datasets: [ml-100k]}\nseed: 2\n", "params.yaml:3: seed: given twice"),
    ("backbone:\n  mf:\n    dim: 8\n    dim: 16\n", "params.yaml:4: dim: given twice"),
    ("evaluate:\n  ks: []\n", "evaluate.ks: must not be empty"),
    ("rank:\n  tasks: []\n", "rank.tasks: must not be empty"),
    ("instruct:\n  tasks: []\n", "instruct.tasks: must not be empty"),
    ("run:\n  datasets: []\n", "run.datasets: must not be empty"),
    ("llm:\n  sft:\n    lora: {target_modules: []}\n", "llm.sft.lora.target_modules: must not be empty"),
])
def test_params_are_strict(tmp_path, text, expected):
    line = run_stage(tmp_path, text, "prepare", "--dataset", "ml-100k")
    assert expected in line, line


def test_yaml_1_2_floats_and_ints_as_floats_are_accepted(tmp_path):
    from stages.params import load_params

    p = tmp_path / "params.yaml"
    p.write_text(GOOD + "backbone:\n  mf: {lr: 1e-2, weight_decay: 0}\n")
    params = load_params(p)
    assert params.backbone.mf.lr == 0.01 and params.backbone.mf.weight_decay == 0


def test_a_missing_section_is_said_once_by_the_stage_that_runs_on_it(tmp_path, monkeypatch, capsys):
    import stages.common

    (tmp_path / "params.yaml").write_text(GOOD)
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(tmp_path / "params.yaml"))
    monkeypatch.setattr(stages.common, "_SAID", set())
    stages.common.params("sampling")
    stages.common.params("sampling")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"note: {tmp_path / 'params.yaml'}: no sampling section; the defaults are used"]
    (tmp_path / "params.yaml").write_text(GOOD + "sampling: {n_users: 10}\n")
    stages.common.params("sampling")
    assert capsys.readouterr().err == ""


def test_a_missing_datasets_section_is_refused(tmp_path):
    line = run_stage(tmp_path, "run: {datasets: [ml-100k]}\n", "prepare", "--dataset", "ml-100k")
    assert "datasets.ml-100k: unknown dataset 'ml-100k' (configured: none)" in line


# ------------------------------------------------------------------ raw data, named by file and line
def _ml100k(folder: Path, *, data: bytes | None = None, item: bytes | None = None) -> Path:
    from recranker.data import write_synthetic

    write_synthetic(folder, 30, 40, 400, seed=0)
    if data is not None:
        (folder / "u.data").write_bytes(data)
    if item is not None:
        (folder / "u.item").write_bytes(item)
    return folder


def _title(line: bytes, suffix: bytes) -> bytes:
    """A u.item line with SUFFIX appended to its title (the second field)."""
    fields = line.split(b"|")
    return b"|".join([fields[0], fields[1] + suffix, *fields[2:]])


def _prepare(tmp_path: Path, source: str) -> str:
    text = f"run: {{datasets: [toy]}}\ndatasets: {{toy: {{format: ml-100k, path: {source}, download: false}}}}\n"
    return run_stage(tmp_path, text, "prepare", "--dataset", "toy")


def _edit_line(path: Path, n: int, edit) -> bytes:
    lines = path.read_bytes().splitlines(True)
    lines[n - 1] = edit(lines[n - 1])
    return b"".join(lines)


@pytest.mark.parametrize("case, expected", [
    ("utf8 title with a broken byte", "u.item:5: invalid UTF-8 (byte 0xff) in a file that is otherwise UTF-8"),
    ("latin-1 control byte", "u.item:3: byte 0x85 is neither UTF-8 nor Latin-1 text"),
    ("item without title", "u.item:4: item has no title"),
    ("rated item missing from u.item", "u.data:7: item 999 is not in u.item"),
    ("negative timestamp", "u.data:2: timestamp -5 outside [0, 4.10244e+09]"),
    ("timestamp after 2100", "u.data:9: timestamp 99999999999 outside"),
])
def test_raw_data_errors_name_file_and_line(tmp_path, case, expected):
    src = _ml100k(tmp_path / "raw")
    item, data = src / "u.item", src / "u.data"
    if case == "utf8 title with a broken byte":  # a UTF-8 copy (accented titles), one byte damaged
        item.write_bytes(item.read_bytes().decode("latin-1").encode("utf-8"))
        item.write_bytes(_edit_line(item, 2, lambda ln: _title(ln, " é".encode())))
        item.write_bytes(_edit_line(item, 5, lambda ln: ln.replace(b"|", b"\xff|", 1)))
    elif case == "latin-1 control byte":
        item.write_bytes(_edit_line(item, 3, lambda ln: ln.replace(b"|", b"\x85|", 1)))
    elif case == "item without title":
        item.write_bytes(_edit_line(item, 4, lambda ln: b"|".join([ln.split(b"|")[0], b"", *ln.split(b"|")[2:]])))
    elif case == "rated item missing from u.item":
        data.write_bytes(_edit_line(data, 7, lambda ln: b"\t".join([ln.split(b"\t")[0], b"999", *ln.split(b"\t")[2:]])))
    elif case == "negative timestamp":
        data.write_bytes(_edit_line(data, 2, lambda ln: b"\t".join([*ln.split(b"\t")[:3], b"-5\n"])))
    else:
        data.write_bytes(_edit_line(data, 9, lambda ln: b"\t".join([*ln.split(b"\t")[:3], b"99999999999\n"])))
    line = _prepare(tmp_path, str(src))
    assert expected in line and str(src) in line, line  # the source's name, not our copy's
    assert not (tmp_path / "data/processed").exists()


def test_utf8_titles_still_read_and_latin1_still_read(tmp_path):
    """The checks refuse a damaged file only: real MovieLens is Latin-1, a re-saved copy UTF-8."""
    from recranker.data import read_raw

    for enc in ("utf-8", "latin-1"):
        src = _ml100k(tmp_path / enc)
        item = src / "u.item"  # written in Latin-1, as MovieLens ships it
        item.write_bytes(item.read_bytes().decode("latin-1").encode(enc))
        item.write_bytes(_edit_line(item, 2, lambda ln, enc=enc: _title(ln, " Misérables".encode(enc))))
        titles = read_raw("ml-100k", src).items["title"].tolist()
        assert any(t.endswith("Misérables") for t in titles)


def test_an_archive_with_two_dataset_folders_is_refused(tmp_path):
    a, b = _ml100k(tmp_path / "a/ml-100k"), _ml100k(tmp_path / "b/ml-100k")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for folder, name in ((a, "a/ml-100k"), (b, "b/ml-100k")):
            for f in folder.iterdir():
                zf.write(f, f"{name}/{f.name}")
    line = _prepare(tmp_path, str(archive))
    assert "ml-100k.zip: 2 dataset folders in the archive ('a/ml-100k', 'b/ml-100k'); keep one" in line


# ------------------------------------------------------------------ inputs between stages
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from test_ranking_stages import _write_predictions, make_project

    root = make_project(tmp_path_factory.mktemp("toy"))
    _write_predictions(root, "test", 0)
    _write_predictions(root, "valid", 1)
    return root


def _evaluate(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "RECRANKER_PARAMS": str(root / "params.yaml")}
    return subprocess.run([sys.executable, "-m", "stages", "evaluate", "--dataset", "toy", "--backbone", "mf"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)


def _rows(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def _put(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("split, task, damage, expected", [
    ("test", "pointwise", "nan score", ":1: score nan of candidate"),
    ("test", "pointwise", "all nan", ":1: score nan of candidate"),
    ("test", "pointwise", "empty", "pointwise.jsonl: no predictions (empty file; run `recranker rank"),
    ("test", "pairwise", "no scores", "pairwise.jsonl:2: missing field 'scores'"),
    ("test", "listwise", "unknown candidate", "listwise.jsonl:1: candidate 9999 is not among user"),
    ("test", "pointwise", "unknown user", "pointwise.jsonl:1: user 9999 has no test candidates"),
    ("valid", "pairwise", "empty", "valid_predictions/toy/mf/pairwise.jsonl: no predictions (empty file"),
])
def test_predictions_are_checked_where_evaluate_reads_them(toy, split, task, damage, expected):
    folder = toy / ("data/predictions/toy/mf" if split == "test" else "data/valid_predictions/toy/mf")
    path = folder / f"{task}.jsonl"
    original = path.read_text()
    rows = _rows(path)
    try:
        if damage == "nan score":
            rows[0]["scores"][0] = float("nan")
        elif damage == "all nan":
            for r in rows:
                r["scores"] = [float("nan")] * len(r["scores"])
        elif damage == "empty":
            rows = []
        elif damage == "no scores":
            del rows[1]["scores"]
        elif damage == "unknown candidate":
            rows[0]["candidates"][0] = 9999
        else:
            rows[0]["user_id"] = 9999
        _put(path, rows)
        res = _evaluate(toy)
        assert res.returncode == 2, res.stderr[-2000:]
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], res.stderr[-2000:]
        assert str(path.relative_to(toy)) in lines[0]
    finally:
        path.write_text(original)


def test_evaluate_runs_on_the_undamaged_predictions(toy):
    res = _evaluate(toy)
    assert res.returncode == 0, res.stderr[-2000:]


def test_rank_refuses_an_empty_test_instructions_file(toy):
    path = toy / "data/instructions/test/toy/mf.jsonl"
    original = path.read_text()
    try:
        path.write_text("")
        env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1",
               "RECRANKER_PARAMS": str(toy / "params.yaml")}
        res = subprocess.run([sys.executable, "-m", "stages", "rank", "--dataset", "toy", "--backbone", "mf"],
                             cwd=toy, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert res.returncode == 2, res.stderr[-2000:]
        assert res.stderr.strip().splitlines()[-1] == (
            "error: data/instructions/test/toy/mf.jsonl: no instructions (empty file; run "
            "`recranker instruct --dataset toy`)")
        assert not (toy / "data/predictions/toy/mf/.tmp").exists()
    finally:
        path.write_text(original)


# ------------------------------------------------------------------ disk full: one line, nothing replaced
def test_a_full_disk_is_one_line_naming_the_output(tmp_path):
    """Real ENOSPC from the kernel (/dev/full) inside the atomic writers: as io.py's writes (instruct)
    and as pyarrow's (prepare) meet it."""
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n")
    with pytest.raises(RecrankerError) as err, atomic_path(target) as tmp:
        tmp.write_text("half")
        with open("/dev/full", "w") as fh:
            fh.write("x" * 100_000)
            fh.flush()
    assert str(err.value) == f"{target}: no space left on device while writing; nothing was replaced " \
                             "(free some space and run again)"
    assert target.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    folder = tmp_path / "processed"
    folder.mkdir()
    (folder / "old.parquet").write_text("previous")
    with pytest.raises(RecrankerError, match="processed: no space left on device"), \
            atomic_path(folder, is_dir=True):
        pd.DataFrame({"a": range(1000)}).to_parquet("/dev/full")  # pyarrow's own OSError
    assert [p.name for p in folder.iterdir()] == ["old.parquet"]
    # a writer inside another (instruct: write_jsonl into atomic_paths' temporary) names the output
    train = tmp_path / "train.jsonl"
    with pytest.raises(RecrankerError) as err, atomic_paths((train, False)) as (tmp,):
        write_jsonl(tmp, _rows_to_the_full_device())
    assert str(err.value).startswith(f"{train}: no space left on device")


def _rows_to_the_full_device():
    yield {"a": 1}
    with open("/dev/full", "w") as fh:
        fh.write("x" * 100_000)
        fh.flush()


# ------------------------------------------------------------------ outputs that change together
def test_outputs_swapped_together_and_a_killed_swap_is_finished(tmp_path, capfd):
    """instruct's train file and valid/test folders: written in full, then swapped in under a
    journal. A writer killed in the middle of the swap (train new, test still old) leaves the
    journal; the next writer of the folder finishes the swap first and says so."""
    train, test = tmp_path / "train/ds.jsonl", tmp_path / "test/ds"
    with atomic_paths((train, False), (test, True)) as (t, d):
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text("train 1\n")
        (d / "mf.jsonl").write_text("test 1\n")
    assert train.read_text() == "train 1\n" and (test / "mf.jsonl").read_text() == "test 1\n"
    # a real writer process, killed (SIGKILL) after it swapped the first output in
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import recranker.io as io
real = io._swap_in
def swap_then_die(swap, _n=[0]):
    real(swap)
    _n[0] += 1
    if _n[0] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
io._swap_in = swap_then_die
with io.atomic_paths(({str(train)!r}, False), ({str(test)!r}, True)) as (t, d):
    open(t, "w").write("train 2\\n")
    open(os.path.join(d, "mf.jsonl"), "w").write("test 2\\n")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == -9, proc.stderr
    assert train.read_text() == "train 2\n" and (test / "mf.jsonl").read_text() == "test 1\n"  # the mix
    assert finish_interrupted_swaps(tmp_path)
    assert train.read_text() == "train 2\n" and (test / "mf.jsonl").read_text() == "test 2\n"
    assert "finished replacing ds.jsonl, ds together" in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test", "train"]  # no journal, no temporaries
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["ds.jsonl"]
