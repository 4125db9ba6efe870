"""The bad-input and fault campaign of issue 15, kept: each case asserts the exit code (or the
error), a one-line message naming the file/line, and that no output changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recranker.errors import RecrankerError
from recranker.io import (
    atomic_path,
    read_jsonl,
    read_npy,
    read_parquet,
    read_safetensors,
    write_json,
)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "stages", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ 1. writers never delete
def _import_project(tmp_path: Path, records) -> None:
    """A params.yaml naming one imported preference dataset `authors` (train = test = the file)."""
    (tmp_path / "prefs.json").write_text(json.dumps(records) if not isinstance(records, str) else records)
    (tmp_path / "params.yaml").write_text(
        "run: {datasets: [ml-100k]}\ndatasets: {ml-100k: {format: ml-100k}}\n"
        f"preferences: {{imported: {{authors: {{path: {tmp_path}, train: prefs.json, k: 1, test: prefs.json}}}}}}\n")


OK_TEST = {"instruction": "Rank", "input": "Candidates:\nHeat (1995)\nJaws (1975)", "output": "Heat (1995), Jaws (1975)"}
OK_PREF = {"instruction": "Rank", "input": "Candidates:\nHeat (1995)\nJaws (1975)",
           "output": ["Heat (1995), Jaws (1975)", "Jaws (1975), Heat (1995)"]}


def test_import_preferences_refuses_an_existing_file_as_its_output_directory(tmp_path):
    """The finding: an import into a path that holds something else deleted it. The output
    (data/preferences/<name>/, a folder) existing as a file is refused and left as it was."""
    _import_project(tmp_path, [OK_PREF])
    out = tmp_path / "data/preferences/authors"
    out.parent.mkdir(parents=True)
    out.write_text("precious")
    before = snapshot(tmp_path)
    res = cli(tmp_path, "import-preferences", "--name", "authors")
    one_line_error(res, "authors: is a file")
    assert snapshot(tmp_path) == before


def test_import_preferences_writes_and_replaces_its_own_folder(tmp_path):
    _import_project(tmp_path, [OK_PREF])
    for _ in range(2):  # the second run replaces the first one's folder, leaving no temporaries
        res = cli(tmp_path, "import-preferences", "--name", "authors")
        assert res.returncode == 0, res.stderr
    out = tmp_path / "data/preferences/authors"
    assert (out / "pref_train.jsonl").is_file() and (out / "pref_test.jsonl").is_file()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_directory_output_refuses_an_existing_file(tmp_path):
    f = tmp_path / "out"
    f.write_text("a file")
    with pytest.raises(RecrankerError, match="is a file"), atomic_path(f, is_dir=True) as tmp:
        (tmp / "x").write_text("never")
    assert f.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_write_leaves_neither_output_nor_temp(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "old").write_text("old output")
    with pytest.raises(ZeroDivisionError), atomic_path(target, is_dir=True) as tmp:
        (tmp / "new").write_text("half")
        1 / 0  # noqa: B018 - the writer fails mid-way
    assert (target / "old").read_text() == "old output" and not (target / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_stale_temps_of_killed_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale_dir = tmp_path / f".out.json.{dead}.abc123"
    stale_dir.mkdir()
    (stale_dir / "out.json").write_text("half")
    live = tmp_path / f".out.json.{os.getppid()}.zzz"  # our parent is alive: a concurrent writer
    live.mkdir()
    other = tmp_path / ".out.json.notapid"  # not our pattern: never touched
    other.mkdir()
    sibling = tmp_path / f".out.json.{dead}.{os.getpid()}.q1w2"  # a temp of "out.json.<dead>"
    sibling.mkdir()
    write_json(tmp_path / "out.json", {"a": 1})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["out.json", live.name, other.name, sibling.name])


# ------------------------------------------------------------------ 5. readers name the file
def test_import_of_an_empty_file_or_list_is_an_error(tmp_path):
    for text in ("", "[]", "\n\n"):
        _import_project(tmp_path, text)
        res = cli(tmp_path, "import-preferences", "--name", "authors")
        one_line_error(res, "prefs.json")
        assert not (tmp_path / "data/preferences/authors").exists()


@settings(max_examples=25, deadline=None)
@given(n_before=st.integers(0, 6), blanks=st.lists(st.booleans(), max_size=6),
       bad=st.sampled_from(["{not json", '{"instruction": "x"}', "[1, 2]", '"text"']))
@example(n_before=0, blanks=[], bad='"text"')  # a first line that is JSON but not an object
def test_jsonl_importer_names_the_right_line(tmp_path_factory, n_before, blanks, bad):
    from recranker.dmpo.importer import import_eval

    lines = []
    for i in range(n_before):
        if i < len(blanks) and blanks[i]:
            lines.append("")
        lines.append(json.dumps(OK_TEST))
    lines.append(bad)
    lines.append(json.dumps(OK_TEST))
    path = tmp_path_factory.mktemp("jsonl") / "prefs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    bad_line = len(lines) - 1  # 1-based line of `bad`
    if n_before == 0 and bad.startswith("["):
        return  # a file starting with '[' is one JSON document, not JSON Lines
    with pytest.raises(RecrankerError) as err:
        import_eval(path, "authors")
    msg = str(err.value)
    assert msg.startswith(f"{path}:{bad_line}:") and "\n" not in msg, msg


def test_non_utf8_jsonl_line_names_file_and_line(tmp_path):
    from recranker.dmpo.importer import import_eval

    path = tmp_path / "prefs.jsonl"
    path.write_bytes((json.dumps(OK_TEST) + "\n").encode() + b'{"instruction": "caf\xe9"}\n')
    with pytest.raises(RecrankerError, match=rf"^{path}:2: not UTF-8"):
        import_eval(path, "authors")
    with pytest.raises(RecrankerError, match=rf"^{path}:2: not UTF-8"):
        list(read_jsonl(path))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_parquet_npy_safetensors_name_the_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    pq, npy, st_ = tmp_path / "a.parquet", tmp_path / "e.npy", tmp_path / "w.safetensors"
    pd.DataFrame({"x": range(1000)}).to_parquet(pq)
    np.save(npy, np.arange(1000.0))
    save_file({"w": torch.arange(1000.0)}, str(st_))
    for path, read in ((pq, read_parquet), (npy, read_npy), (st_, read_safetensors)):
        read(path)  # intact: fine
        _truncate(path)
        with pytest.raises(RecrankerError) as err:
            read(path)
        msg = str(err.value)
        assert msg.startswith(f"{path}: not a readable") and "\n" not in msg, msg
        with pytest.raises(RecrankerError, match="not found .run x."):
            read(tmp_path / "missing", missing="run x")


def test_truncated_backbone_weights_name_the_file(tmp_path):
    from recranker.backbones.base import load

    (tmp_path / "config.json").write_text(json.dumps({"model": "mf", "n_users": 3, "n_items": 4,
                                                      "hyper_parameters": {}, "seed": 0}))
    (tmp_path / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(RecrankerError, match="weights.safetensors: not a readable safetensors"):
        load(tmp_path)


def test_movielens_utf8_titles_are_not_mojibake(tmp_path):
    from recranker.data.movielens import read_ml100k

    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n2\t2\t3\t881250950\n")
    flags = "|".join(["0"] * 18 + ["1"])
    for enc in ("utf-8", "latin-1"):
        (tmp_path / "u.item").write_bytes(
            (f"1|Café Society (1995)|01-Jan-1995||http://x|{flags}\n"
             f"2|Amélie (2001)|01-Jan-2001||http://x|{flags}\n").encode(enc))
        titles = list(read_ml100k(tmp_path).items["title"])
        assert titles == ["Café Society (1995)", "Amélie (2001)"], (enc, titles)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_deleted_or_truncated_adapter_names_the_file(tiny_base, tmp_path, damage):
    from peft import LoraConfig, get_peft_model

    from recranker.llm.model import load_model, load_tuned

    adapter = tmp_path / "sft"
    get_peft_model(load_model(str(tiny_base)), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    weights = adapter / "adapter_model.safetensors"
    weights.unlink() if damage == "delete" else _truncate(weights)
    with pytest.raises(RecrankerError) as err:
        load_tuned(adapter, tiny_base)
    msg = str(err.value)
    assert msg.startswith(str(weights)) and "\n" not in msg, msg
