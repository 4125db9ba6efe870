"""LLaMA-Factory preference files (the DMPO authors' format): sft records, dpo_ranking_k records
grouped k to a sample, eval records with string or list outputs; one-line errors naming the
record; `import-preferences` into the DMPO branch.

Two layouts: the project generator's (`recranker.data.synthetic.write_llama_factory`: quoted
history titles, non-ASCII and punctuation-heavy negatives, some also in the history) and a
hand-written one whose titles contain ", " as real movie titles do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recranker.data.synthetic import HARD_TITLES, llama_factory_records, write_llama_factory
from recranker.dmpo.importer import (
    candidate_context,
    import_eval,
    import_ranking,
    import_sft,
    import_stats,
)
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
    """k records per sample, candidates shown in alternating order."""
    out = []
    for s, (hist, pos) in enumerate(zip(HISTORIES, POSITIVES)):
        for i, neg in enumerate(NEGATIVES[s][:k]):
            a, b = (pos, neg) if (s + i) % 2 == 0 else (neg, pos)
            out.append({"instruction": INSTRUCTION, "input": inp(hist, a, b),
                        "output": [f"{pos}, {neg}", f"{neg}, {pos}"]})
    return out


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_100_histories_of_k_records_import_to_100_samples_of_k_pairs(tmp_path, k):
    """The done-when: the generator's files (a hard negative per history, every 4th also in its
    history) import to exactly 100 samples × k pairs, in file order, titles as in the file."""
    (path,) = [p for p in write_llama_factory(tmp_path, 100, (k,), seed=k) if p.name.startswith("dpo_ranking")]
    source = json.loads(path.read_text(encoding="utf-8"))
    rows = import_ranking(path, "authors", k)
    assert len(rows) == 100 and {len(r["pairs"]) for r in rows} == {k}
    assert [r["meta"]["records"] for r in rows] == [list(range(j * k, j * k + k)) for j in range(100)]
    pairs = [p for r in rows for p in r["pairs"]]
    assert [[p["chosen"], p["rejected"]] for p in pairs] == [rec["output"] for rec in source]
    assert [p["prompt"][-1]["content"] for p in pairs] == [f"{rec['instruction']}\n{rec['input']}" for rec in source]
    shown = {p["rejected"].split(", ")[0] for p in pairs}
    assert "Amélie (2001)" in shown and "千と千尋の神隠し (2001)" in shown  # raw UTF-8, never escaped
    in_history = [r for r in rows if any(t in r["meta"]["history_text"] for t in HARD_TITLES)]
    assert len(in_history) == 25  # the negative is mentioned twice in these prompts, and still groups


def test_the_hard_cases_of_the_former_key(tmp_path):
    """The two inputs that split samples before: a negative whose title is also in the history, and
    a non-ASCII negative (escaped by json.dumps, so never blanked)."""
    pos, negs = "Heat (1995)", ["Amélie (2001)", "Jaws (1975)", "Ça, c'est la vie! (1999)"]
    hist = "Jaws (1975)\nToy Story (1995)"  # the second negative is also in the history
    recs = [{"instruction": INSTRUCTION, "input": inp(hist, *((pos, n) if i % 2 else (n, pos))),
             "output": [f"{pos}, {n}", f"{n}, {pos}"]} for i, n in enumerate(negs)]
    rows = import_ranking(write(tmp_path / "k3.json", recs), "authors", 3)
    assert len(rows) == 1 and [p["rejected"] for p in rows[0]["pairs"]] == [f"{n}, {pos}" for n in negs]
    assert rows[0]["meta"]["history_text"] == "History:\n" + hist + "\nCandidates:\n"


def test_hand_written_layout_groups_in_order_and_any_record_order(tmp_path):
    rows = import_ranking(write(tmp_path / "ml100k_train_k3.json", pref_records(3)), "authors", 3)
    assert len(rows) == 2 and [len(r["pairs"]) for r in rows] == [3, 3]
    for r, pos, negs in zip(rows, POSITIVES, NEGATIVES):
        assert [p["chosen"] for p in r["pairs"]] == [f"{pos}, {n}" for n in negs]
        assert [p["rejected"] for p in r["pairs"]] == [f"{n}, {pos}" for n in negs]
    assert rows[0]["meta"]["records"] == [0, 1, 2] and rows[1]["meta"]["records"] == [3, 4, 5]
    # interleaved records group by history + positive, not by position; samples in first-record order
    shuffled = [pref_records(3)[i] for i in (3, 0, 4, 1, 5, 2)]
    again = import_ranking(write(tmp_path / "s.json", shuffled), "authors", 3)
    assert [r["meta"]["records"] for r in again] == [[0, 2, 4], [1, 3, 5]]
    # the same history and positive in two samples in a row: full at k, the next record starts another
    twice = import_ranking(write(tmp_path / "t.json", pref_records(3)[:3] + pref_records(3)[:1]), "authors", 2)
    assert [r["meta"]["records"] for r in twice] == [[0, 1], [2, 3]]


def test_a_title_inside_the_other_candidate(tmp_path):
    text = "Seen:\nHeat 2 (2000)\nPick:\nHeat (1995)\nHeat (1995) II\nAnswer."
    before, between, after = candidate_context(text, "Heat (1995)", "Heat (1995) II")
    assert before == "Seen:\nHeat 2 (2000)\nPick:\n" and between == "\n" and after == "\nAnswer."
    assert candidate_context(text, "Heat (1995)", "Fargo (1996)") is None


def test_a_history_with_k_minus_1_records_stops_naming_its_first_record(tmp_path):
    recs = llama_factory_records(10, 3, seed=0)["dpo_ranking"]
    del recs[14]  # history 4 (records 12-14) keeps 2
    path = write(tmp_path / "k3.json", recs)
    with pytest.raises(DataFormatError, match=r"k3\.json:\d+: record 12: its sample \(records 12, 13: same "
                                              r"history and positive\) has 2 pairs, dpo_ranking_3 needs 3"):
        import_ranking(path, "authors", 3)
    with pytest.raises(DataFormatError, match=r"record 0: .* has 3 pairs, dpo_ranking_4 needs 4"):
        import_ranking(path, "authors", 4)  # the wrong k for the file: its first sample says so


def test_a_repeated_negative_names_the_repeat_and_its_first_copy(tmp_path):
    recs = pref_records(3)
    recs[2] = recs[0]  # the third record repeats the first one's negative
    with pytest.raises(DataFormatError, match=r"p\.json:\d+: record 2: negative 'Grease 2 \(1982\)' repeats "
                                              r"record 0's in one sample"):
        import_ranking(write(tmp_path / "p.json", recs), "authors", 3)


def test_an_eval_file_names_its_bad_record_not_record_0(tmp_path):
    """Record 3's output is bad; records 0-2 are list outputs (the file is never re-read as another kind)."""
    recs = llama_factory_records(5, 1, n_eval=6, seed=0)["valid"]
    recs[3]["output"] = ["Nope, Nothing"]
    path = write(tmp_path / "valid.json", recs)
    starts = [n for n, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if ln == " {"]
    with pytest.raises(DataFormatError, match=rf"valid\.json:{starts[3]}: record 3: eval 'output' must be"):
        import_eval(path, "authors", "valid")


def test_truncated_json_names_line_and_column(tmp_path):
    path = write(tmp_path / "test.json", llama_factory_records(3, 1, n_eval=3, seed=0)["test"])
    data = path.read_text(encoding="utf-8")
    path.write_text(data[: len(data) // 2], encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"test\.json:\d+: invalid JSON \(.*, column \d+\)$"):
        import_eval(path, "authors")
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text('{"instruction": "x", "output": "a, b"}\n{"instruction": "x", "outp\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"test\.jsonl:2: invalid JSON \(.*, column \d+\)$"):
        import_eval(jsonl, "authors")


def test_eval_records_with_string_and_list_outputs(tmp_path):
    recs = llama_factory_records(4, 1, n_eval=4, seed=1)
    test = import_eval(write(tmp_path / "test.json", recs["test"]), "authors")
    valid = import_eval(write(tmp_path / "valid.json", recs["valid"]), "authors", "valid")
    for rows, src in ((test, recs["test"]), (valid, recs["valid"])):
        assert len(rows) == 4 and all(len(r["pairs"]) == 1 for r in rows)
        for r, rec in zip(rows, src):
            chosen = rec["output"] if isinstance(rec["output"], str) else rec["output"][0]
            a, b = chosen.split(", ", 1) if chosen.count(", ") == 1 else (None, None)
            assert r["pairs"][0]["chosen"] == chosen
            if a is not None:
                assert r["pairs"][0]["rejected"] == f"{b}, {a}"
    hand = [{"instruction": INSTRUCTION, "input": inp(HISTORIES[0], NEGATIVES[0][0], POSITIVES[0]),
             "output": f"{POSITIVES[0]}, {NEGATIVES[0][0]}"}]
    rows = import_eval(write(tmp_path / "hand.json", hand), "authors")
    assert rows[0]["pairs"][0]["rejected"] == "Grease 2 (1982), Godfather, The (1972)"


def test_sft_records(tmp_path):
    recs = [{"instruction": INSTRUCTION, "input": inp(HISTORIES[1], POSITIVES[1], NEGATIVES[1][0]),
             "output": f"{POSITIVES[1]}, {NEGATIVES[1][0]}"}]
    rows = import_sft(write(tmp_path / "sft.json", recs), "authors")
    assert rows[0]["completion"] == "Heat (1995), Striptease (1996)"
    assert rows[0]["messages"][-1]["content"].startswith(INSTRUCTION + "\nHistory:")


def test_stats_count_what_is_there(tmp_path):
    recs = llama_factory_records(20, 3, n_eval=10, shared_eval=4, seed=0)
    train = import_ranking(write(tmp_path / "k3.json", recs["dpo_ranking"]), "x", 3)
    test = import_eval(write(tmp_path / "test.json", recs["test"]), "x")
    stats = import_stats({"train": train, "valid": [], "test": test})
    assert stats["train"]["samples"] == 20 and stats["train"]["pairs_per_sample"] == {"3": 20}
    assert stats["train"]["histories"] == 20 and stats["test"]["histories"] == 10
    assert stats["test"]["histories_in_train"] == 4 and stats["valid"]["samples"] == 0
    assert stats["train"]["mean_history_chars"] > 100 and stats["train"]["mean_history_lines"] == 2.0


@pytest.mark.parametrize(("fn", "data", "message"), [
    (import_ranking, [{"instruction": "x", "input": "", "output": "a, b"}], r"p\.json:2: record 0: dpo_ranking_1 'output'"),
    (import_ranking, [pref_records(1)[0], {"instruction": "x", "output": ["a, b", "a, b"]}],
     r"p\.json:\d+: record 1: rejected .* is not chosen"),
    (import_ranking, [{"input": "", "output": ["a, b", "b, a"]}], r"p\.json:2: record 0: 'instruction'"),
    (import_ranking, [{"instruction": "x", "output": ["a, b", "b, a"]}], r"record 0: candidate 'a' is not in the prompt"),
    (import_eval, [{"instruction": "Rank A or B", "output": "C, D"}], r"p\.json:2: record 0: output 'C, D' is not"),
    (import_sft, [{"instruction": "x", "output": ["a", "b"]}], r"p\.json:2: record 0: SFT 'output'"),
    (import_sft, {"instruction": "x"}, r"p\.json: expected a JSON list"),
])
def test_errors_name_file_and_record(tmp_path, fn, data, message):
    path = write(tmp_path / "p.json", data)
    with pytest.raises(DataFormatError, match=message) as err:
        fn(path, "authors", *([1] if fn is import_ranking else []))
    assert "\n" not in str(err.value)


def test_import_command_feeds_the_dmpo_branch(tmp_path, monkeypatch):
    import stages.common
    from stages import dmpo_io
    from stages.common import user_errors
    from stages.preferences import import_preferences

    src = tmp_path / "authors"
    write_llama_factory(src, 6, (3,), seed=0, n_eval=4, shared_eval=1)
    (tmp_path / "params.yaml").write_text(
        "run: {datasets: []}\n"
        f"preferences: {{imported: {{authors: {{path: {src}, train: dpo_ranking_3.json, k: 3, test: test.json, "
        "valid: valid.json}}}\n"
        "llm: {dmpo: {datasets: [authors]}, pref_eval: {datasets: [authors]}}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stages.common, "PARAMS_FILE", str(tmp_path / "params.yaml"))
    user_errors(import_preferences)(name="authors")
    out = tmp_path / "data/preferences/authors"
    p = stages.common.params()
    assert dmpo_io.train_datasets(p) == ["authors"] == dmpo_io.eval_datasets(p)
    train = dmpo_io.read_preferences(out / dmpo_io.TRAIN_FILE, k=3)
    assert len(train) == 6 and len(dmpo_io.read_preferences(out / dmpo_io.TEST_FILE, k=1)) == 4
    sft = [json.loads(ln) for ln in (out / dmpo_io.SFT_FILE).read_text().splitlines()]
    assert len(sft) == 18 and sft[0]["completion"] == train[0]["pairs"][0]["chosen"]
    stats = json.loads((tmp_path / "metrics/preferences/authors.json").read_text())
    assert stats["train"]["histories"] == 6 and stats["test"]["histories_in_train"] == 1
    assert stats["valid"]["samples"] == 4 and stats["sft"]["samples"] == 18
    import typer

    with pytest.raises(typer.Exit):
        user_errors(import_preferences)(name="nope")


def test_params_of_an_imported_dataset_are_checked():
    from recranker.errors import RecrankerError
    from stages.params import check_params

    base = {"run": {"datasets": []}, "datasets": {"ml-100k": {"format": "ml-100k"}}}
    ok = {"path": "authors", "train": "k3.json", "k": 3, "test": "test.json"}
    for bad, needle in ((dict(ok, k=0), "preferences.imported.a.k"),
                        (dict(ok, train="/abs/k3.json"), "preferences.imported.a.train"),
                        ({k: v for k, v in ok.items() if k != "path"}, "preferences.imported.a.path")):
        with pytest.raises(RecrankerError, match=needle):
            check_params({**base, "preferences": {"imported": {"a": bad}}}, "params.yaml")
    with pytest.raises(RecrankerError, match=r"preferences\.imported\.ml-100k: 'ml-100k' is also a key of datasets"):
        check_params({**base, "preferences": {"imported": {"ml-100k": ok}}}, "params.yaml")
    with pytest.raises(RecrankerError, match=r"preferences\.imported: .*name 'a/b'"):
        check_params({**base, "preferences": {"imported": {"a/b": ok}}}, "params.yaml")
