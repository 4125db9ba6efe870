"""The DMPO authors' LLaMA-Factory files: SFT records, preference records grouped k to a sample,
string-output pairwise test records; one-line errors; `import-preferences` into the DMPO branch.

Fixtures follow the released format exactly: JSON lists of {"instruction", "input", "output"};
"output" is the answer string (SFT), [chosen, rejected] (preference) or the preferred order
string (pairwise test). Titles contain commas, as real movie titles do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recranker.dmpo.importer import import_pairs, import_sft, import_test_pairs
from recranker.errors import DataFormatError

INSTRUCTION = ("Given the user's viewing history, rank the two candidate movies by how much the user "
               "would like them. Answer with the two titles, best first, separated by a comma.")
HISTORIES = ["Star Wars (1977)\nFargo (1996)\nContact (1997)", "Toy Story (1995)\nBabe (1995)"]
POSITIVES = ["Godfather, The (1972)", "Heat (1995)"]
NEGATIVES = [["Grease 2 (1982)", "Jaws 3-D (1983)", "Batman & Robin (1997)"],
             ["Striptease (1996)", "Barb Wire (1996)", "Mortal Kombat: Annihilation (1997)"]]


def inp(hist: str, a: str, b: str) -> str:
    return f"History:\n{hist}\nCandidates:\n{a}\n{b}"


def pref_records(k: int) -> list[dict]:
    """k records per sample, the way the authors lay them out (one file per k, 100·k records):
    every negative of every sample, candidates shown in alternating order."""
    out = []
    for s, (hist, pos) in enumerate(zip(HISTORIES, POSITIVES)):
        for i, neg in enumerate(NEGATIVES[s][:k]):
            a, b = (pos, neg) if (s + i) % 2 == 0 else (neg, pos)
            out.append({"instruction": INSTRUCTION, "input": inp(hist, a, b),
                        "output": [f"{pos}, {neg}", f"{neg}, {pos}"]})
    return out


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    return path


def test_preference_records_group_into_samples_with_k_negatives(tmp_path):
    rows = import_pairs(write(tmp_path / "ml100k_train_k3.json", pref_records(3)), "authors", "train")
    assert len(rows) == 2 and [len(r["pairs"]) for r in rows] == [3, 3]
    for r, pos, negs in zip(rows, POSITIVES, NEGATIVES):
        assert [p["chosen"] for p in r["pairs"]] == [f"{pos}, {n}" for n in negs]
        assert [p["rejected"] for p in r["pairs"]] == [f"{n}, {pos}" for n in negs]
        assert r["pairs"][0]["prompt"] == [{"role": "user", "content": INSTRUCTION + "\n" + r["pairs"][0]["prompt"][0]["content"].split("\n", 1)[1]}]
    assert rows[0]["meta"]["records"] == [0, 1, 2] and rows[1]["meta"]["records"] == [3, 4, 5]
    # a record-order shuffle groups the same way (keyed by history + positive, not by position)
    shuffled = [pref_records(3)[i] for i in (3, 0, 4, 1, 5, 2)]
    again = import_pairs(write(tmp_path / "s.json", shuffled), "authors", "train")
    assert sorted(len(r["pairs"]) for r in again) == [3, 3]
    k1 = import_pairs(write(tmp_path / "k1.json", pref_records(1)), "authors", "train")
    assert [len(r["pairs"]) for r in k1] == [1, 1]


def test_string_output_test_records_reject_the_swapped_order(tmp_path):
    recs = [{"instruction": INSTRUCTION, "input": inp(HISTORIES[0], NEGATIVES[0][0], POSITIVES[0]),
             "output": f"{POSITIVES[0]}, {NEGATIVES[0][0]}"}]
    rows = import_test_pairs(write(tmp_path / "test.json", recs), "authors")
    assert rows[0]["pairs"][0]["chosen"] == "Godfather, The (1972), Grease 2 (1982)"
    assert rows[0]["pairs"][0]["rejected"] == "Grease 2 (1982), Godfather, The (1972)"


def test_sft_records(tmp_path):
    recs = [{"instruction": INSTRUCTION, "input": inp(HISTORIES[1], POSITIVES[1], NEGATIVES[1][0]),
             "output": f"{POSITIVES[1]}, {NEGATIVES[1][0]}"}]
    rows = import_sft(write(tmp_path / "sft.json", recs), "authors")
    assert rows[0]["completion"] == "Heat (1995), Striptease (1996)"
    assert rows[0]["messages"][-1]["content"].startswith(INSTRUCTION + "\nHistory:")


@pytest.mark.parametrize(("fn", "data", "message"), [
    (import_pairs, [{"instruction": "x", "input": "", "output": "a, b"}], r"p\.json: record 0: preference 'output'"),
    (import_pairs, [pref_records(1)[0], {"instruction": "x", "output": ["a, b", "a, b"]}],
     r"p\.json: record 1: rejected .* is not chosen"),
    (import_pairs, [{"input": "", "output": ["a, b", "b, a"]}], r"p\.json: record 0: 'instruction'"),
    (import_test_pairs, [{"instruction": "Rank A or B", "output": "C, D"}], r"p\.json: record 0: output 'C, D' is not"),
    (import_sft, [{"instruction": "x", "output": ["a", "b"]}], r"p\.json: record 0: SFT 'output'"),
    (import_sft, {"instruction": "x"}, r"p\.json: expected a JSON list"),
])
def test_errors_name_file_and_record(tmp_path, fn, data, message):
    path = write(tmp_path / "p.json", data)
    with pytest.raises(DataFormatError, match=message) as err:
        fn(path, "authors", *(["train"] if fn is import_pairs else []))
    assert "\n" not in str(err.value)


def test_import_command_feeds_the_dmpo_branch(tmp_path, monkeypatch):
    import stages.common
    from stages import dmpo_io
    from stages.common import user_errors
    from stages.preferences import import_preferences

    src = tmp_path / "authors"
    src.mkdir()
    write(src / "train_k3.json", pref_records(3))
    write(src / "test.json", [{"instruction": INSTRUCTION, "input": inp(HISTORIES[0], POSITIVES[0], NEGATIVES[0][1]),
                               "output": f"{POSITIVES[0]}, {NEGATIVES[0][1]}"}])
    (tmp_path / "params.yaml").write_text(
        "run: {datasets: [ml-100k]}\ndatasets: {ml-100k: {format: ml-100k}}\n"
        f"preferences: {{imported: {{authors: {{train: {src / 'train_k3.json'}, test: {src / 'test.json'}}}}}}}\n"
        "llm: {dmpo: {datasets: [authors]}, pref_eval: {datasets: [authors]}}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(tmp_path / "params.yaml"))
    user_errors(import_preferences)(name="authors")
    out = tmp_path / "data/preferences/authors"
    p = stages.common.params()
    assert dmpo_io.train_datasets(p) == ["authors"] == dmpo_io.eval_datasets(p)
    train = dmpo_io.read_preferences(out / dmpo_io.TRAIN_FILE, k=3)
    assert len(train) == 2 and len(dmpo_io.read_preferences(out / dmpo_io.TEST_FILE, k=1)) == 1
    sft = [json.loads(ln) for ln in (out / dmpo_io.SFT_FILE).read_text().splitlines()]
    assert len(sft) == 6 and sft[0]["completion"] == f"{POSITIVES[0]}, {NEGATIVES[0][0]}"
    import typer

    with pytest.raises(typer.Exit):
        user_errors(import_preferences)(name="nope")
