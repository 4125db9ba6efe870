"""LLaMA-Factory preference files (the format of the DMPO authors' release) → recranker records.

Every record is an alpaca record ``{"instruction", "input", "output", "system"?, "history"?}``;
the user turn is ``instruction``, a newline and ``input`` (when non-empty), ``system`` and
``history`` ([[user, assistant], ...]) become earlier turns. Three file kinds, each read by its
own function (a file is never re-read as another kind):

* ``sft`` (:func:`import_sft`): ``"output"`` is the answer string → instruction records
  (``messages`` + ``completion``) for `dmpo-sft`;
* ``dpo_ranking_k`` (:func:`import_ranking`): ``"output": [chosen, rejected]`` with chosen
  ``"<p>, <n>"`` and rejected ``"<n>, <p>"``; a sample is k records that share the history and
  the positive ``p`` and differ in the negative ``n`` (one pairwise prompt per negative). The
  authors release one file per k, 100·k records;
* ``eval`` (:func:`import_eval`): one test (or valid) pair per record, ``"output"`` either the
  preferred order ``"<a>, <b>"`` (rejected = the two swapped) or ``[chosen, rejected]``.

How a dpo_ranking_k sample is recognised — from what the format defines, never from edited text:
the positive is the chosen answer's first title (the split of chosen/rejected at the one ", "
that makes rejected the swap); the two candidate titles are located in the user turn as their
last mentions (the candidate lines follow the history, so a title that also appears in the
history is found in the candidate lines); the record's *context* is everything else, verbatim:
the earlier turns, the text before the first candidate, between the two and after the second.
Records with the same context and positive are one sample, in file order; the sample is full at
k records (a later record of the same context starts another sample), and a sample that ends
with another number of records, or repeats a negative, stops the import naming the record.
Titles are compared as the exact UTF-8 strings of the file (no escaping, no normalisation).

Errors are one line naming the file, the record's line and its index (``record 3``, 0-based);
invalid JSON names its line and column.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recranker.errors import DataFormatError, RecrankerError

KINDS = ("sft", "dpo_ranking_k", "eval")


@dataclass(frozen=True)
class _Record:
    index: int  # 0-based position in the file
    line: int  # 1-based line where the record starts
    value: Any


def _json_error(path: Path, exc: json.JSONDecodeError, line_offset: int = 0) -> DataFormatError:
    return DataFormatError(path, exc.lineno + line_offset, f"invalid JSON ({exc.msg}, column {exc.colno})")


def _list_records(text: str, data: list) -> list[_Record]:
    """The records of a JSON list with the line each starts on (a second, positional parse)."""
    decoder = json.JSONDecoder()
    at = text.index("[") + 1
    records = []
    for i in range(len(data)):
        while text[at] in " \t\r\n,":
            at += 1
        records.append(_Record(i, text.count("\n", 0, at) + 1, data[i]))
        _, at = decoder.raw_decode(text, at)
    return records


def _load(path: Path) -> list[_Record]:
    """The records of a JSON list or JSON Lines file, each with its line. Not UTF-8, invalid JSON
    (line and column) or no record at all is one line naming the file."""
    if not path.is_file():
        raise RecrankerError(f"{path}: not found" if not path.exists() else f"{path}: not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, raw.count(b"\n", 0, exc.start) + 1, "not UTF-8") from None
    if text.lstrip().startswith("["):  # one JSON document: the parser's own position
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _json_error(path, exc) from None
        records = _list_records(text, data)
    else:
        if path.suffix != ".jsonl":  # a .json file that is one document, but not a list
            try:
                json.loads(text)
            except json.JSONDecodeError:
                pass
            else:
                raise DataFormatError(path, None, "expected a JSON list of records")
        records = []
        for n, ln in enumerate(text.splitlines(), 1):
            if not ln.strip():
                continue
            try:
                value = json.loads(ln)
            except json.JSONDecodeError as exc:
                raise _json_error(path, exc, n - 1) from None
            records.append(_Record(len(records), n, value))
    if not records:
        raise DataFormatError(path, None, "no records (empty file or empty list)")
    return records


def _bad(path: Path, rec: _Record, msg: str) -> DataFormatError:
    return DataFormatError(path, rec.line, f"record {rec.index}: {msg}")


def _messages(path: Path, rec: _Record) -> list[dict]:
    e = rec.value
    if not isinstance(e, dict):
        raise _bad(path, rec, "expected an object")
    instruction, inp = e.get("instruction"), e.get("input", "")
    if not isinstance(instruction, str) or not instruction:
        raise _bad(path, rec, "'instruction' must be a non-empty string")
    if not isinstance(inp, str):
        raise _bad(path, rec, "'input' must be a string")
    msgs = []
    if e.get("system"):
        if not isinstance(e["system"], str):
            raise _bad(path, rec, "'system' must be a string")
        msgs.append({"role": "system", "content": e["system"]})
    for turn in e.get("history") or []:
        if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise _bad(path, rec, "'history' must be [[user, assistant], ...]")
        msgs += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    msgs.append({"role": "user", "content": instruction + ("\n" + inp if inp else "")})
    return msgs


def _output(path: Path, rec: _Record):
    if "output" not in rec.value:
        raise _bad(path, rec, "no 'output'")
    return rec.value["output"]


def _split_pair(chosen: str, rejected: str | None, prompt_text: str) -> tuple[str, str] | None:
    """(first, second) with chosen == "first, second" (and rejected == "second, first" if given,
    else both titles in the prompt); None unless exactly one split fits."""
    found = []
    at = chosen.find(", ")
    while at != -1:
        a, b = chosen[:at], chosen[at + 2 :]
        if a and b and (rejected == f"{b}, {a}" if rejected is not None else (a in prompt_text and b in prompt_text)):
            found.append((a, b))
        at = chosen.find(", ", at + 1)
    return found[0] if len(found) == 1 else None


def candidate_context(text: str, a: str, b: str) -> tuple[str, str, str] | None:
    """The user turn around its two candidate titles ``a`` and ``b``: (before the first, between,
    after the second), verbatim. The candidates are the titles' last mentions (the longer title
    first, so a title inside the other is not taken for it); None when one is not in the text."""
    long, short = (a, b) if len(a) >= len(b) else (b, a)
    at_long = text.rfind(long)
    if at_long < 0:
        return None
    at_short = text.rfind(short, at_long + len(long))
    if at_short < 0:
        at_short = text.rfind(short, 0, at_long)
    if at_short < 0:
        return None
    (s1, e1), (s2, e2) = sorted([(at_long, at_long + len(long)), (at_short, at_short + len(short))])
    return text[:s1], text[e1:s2], text[e2:]


def _history_text(rec: _Record, msgs: list[dict], context: tuple[str, str, str]) -> str:
    """What a record shows of the user besides the candidates, verbatim: the earlier turns and the
    user turn's text before the first candidate, less the instruction (the history)."""
    before = context[0].removeprefix(rec.value["instruction"] + "\n")
    return "\n".join([*(m["content"] for m in msgs[:-1]), before])


def import_sft(path: str | Path, name: str) -> list[dict]:
    """A ``sft`` file (output = the answer string) → instruction records."""
    path = Path(path)
    rows = []
    for rec in _load(path):
        msgs, out = _messages(path, rec), _output(path, rec)
        if not isinstance(out, str) or not out:
            raise _bad(path, rec, "SFT 'output' must be a non-empty answer string")
        pair = _split_pair(out, None, msgs[-1]["content"])
        context = candidate_context(msgs[-1]["content"], *pair) if pair else None
        meta = {"source": path.name, "record": rec.index}
        if context is not None:
            meta["history_text"] = _history_text(rec, msgs, context)
        rows.append({"id": f"{name}/sft/{rec.index}", "dataset": name, "task": "dmpo-sft", "user_id": None,
                     "messages": msgs, "completion": out, "meta": meta})  # fmt: skip
    return rows


def _pair(path: Path, rec: _Record, msgs: list[dict], out, *, kind: str) -> dict:
    """One (chosen, rejected) pair of a record: its titles, its context, its prompt."""
    text = msgs[-1]["content"]
    if isinstance(out, list):
        if not (len(out) == 2 and all(isinstance(o, str) and o for o in out)):
            raise _bad(path, rec, f"{kind} 'output' must be [chosen, rejected] strings")
        chosen, rejected = out
        split = _split_pair(chosen, rejected, "")
        if split is None:
            raise _bad(path, rec, f"rejected {rejected[:60]!r} is not chosen {chosen[:60]!r} with its two "
                                  "candidates swapped")  # fmt: skip
    elif isinstance(out, str) and out and kind == "eval":
        chosen, split = out, _split_pair(out, None, text)
        if split is None:
            raise _bad(path, rec, f"output {out[:60]!r} is not two candidate titles of the prompt joined by ', '")
        rejected = f"{split[1]}, {split[0]}"
    else:
        want = "[chosen, rejected] or the preferred order string" if kind == "eval" else "[chosen, rejected] strings"
        raise _bad(path, rec, f"{kind} 'output' must be {want}")
    context = candidate_context(text, *split)
    if context is None:
        missing = next(t for t in split if t not in text)
        raise _bad(path, rec, f"candidate {missing[:60]!r} is not in the prompt")
    return {"prompt": msgs, "chosen": chosen, "rejected": rejected, "positive": split[0], "negative": split[1],
            "context": (tuple(m["content"] for m in msgs[:-1]), *context), "history_text": _history_text(rec, msgs, context)}


def import_ranking(path: str | Path, name: str, k: int, split: str = "train") -> list[dict]:
    """A ``dpo_ranking_k`` file → samples of exactly k pairs, in the order of their first record
    (module docstring: how the records of a sample are recognised)."""
    if k < 1:
        raise RecrankerError(f"import_ranking: k must be ≥ 1, got {k}")
    path = Path(path)
    kind = f"dpo_ranking_{k}"
    samples: list[list[tuple[_Record, dict]]] = []
    open_sample: dict[tuple, int] = {}  # (context, positive) → index of its sample still below k
    for rec in _load(path):
        msgs = _messages(path, rec)
        pair = _pair(path, rec, msgs, _output(path, rec), kind=kind)
        key = (pair["context"], pair["positive"])
        at = open_sample.get(key)
        if at is None:
            at = open_sample[key] = len(samples)
            samples.append([])
        for earlier, p in samples[at]:
            if p["negative"] == pair["negative"]:
                raise _bad(path, rec, f"negative {pair['negative'][:60]!r} repeats record {earlier.index}'s in one "
                                      f"sample (same history and positive); {kind} needs {k} different negatives")
        samples[at].append((rec, pair))
        if len(samples[at]) == k:
            del open_sample[key]
    for sample in samples:
        if len(sample) != k:
            shown = ", ".join(str(r.index) for r, _ in sample)
            raise _bad(path, sample[0][0], f"its sample (record{'s' * (len(sample) > 1)} {shown}: same history and "
                                           f"positive) has {len(sample)} pair{'s' * (len(sample) != 1)}, {kind} "
                                           f"needs {k}")  # fmt: skip
    return [_sample_row(name, split, path, j, sample) for j, sample in enumerate(samples)]


def _sample_row(name: str, split: str, path: Path, j: int, sample: list[tuple[_Record, dict]]) -> dict:
    return {"id": f"{name}/dmpo/{split}/{j}", "dataset": name, "user_id": None,
            "pairs": [{key: p[key] for key in ("prompt", "chosen", "rejected")} for _, p in sample],
            "meta": {"split": split, "source": path.name, "records": [r.index for r, _ in sample],
                     "history_text": sample[0][1]["history_text"]}}  # fmt: skip


def import_eval(path: str | Path, name: str, split: str = "test") -> list[dict]:
    """An ``eval`` file → one single-pair record per record (output: the preferred order string,
    rejected = the two titles swapped; or [chosen, rejected])."""
    path = Path(path)
    rows = []
    for rec in _load(path):
        msgs = _messages(path, rec)
        pair = _pair(path, rec, msgs, _output(path, rec), kind="eval")
        rows.append(_sample_row(name, split, path, rec.index, [(rec, pair)]))
    return rows


def import_stats(splits: dict[str, list[dict]], sft: Iterable[dict] = ()) -> dict:
    """What an import holds, counted from the records: per split the samples, the number of samples
    per pair count, the distinct histories (the context text before the candidates: see
    :func:`candidate_context`), their mean length in lines and characters; for valid/test the
    distinct histories that also occur in the training data (train pairs or SFT records)."""
    train_hist = {r["meta"]["history_text"] for r in splits.get("train", [])}
    train_hist |= {r["meta"]["history_text"] for r in sft if "history_text" in r.get("meta", {})}
    out: dict[str, dict] = {}
    for split, rows in splits.items():
        hist = [r["meta"]["history_text"] for r in rows]
        distinct = set(hist)
        per = np.bincount([len(r["pairs"]) for r in rows]) if rows else np.zeros(0, dtype=int)
        out[split] = {
            "samples": len(rows),
            "pairs": int(sum(len(r["pairs"]) for r in rows)),
            "pairs_per_sample": {str(n): int(c) for n, c in enumerate(per) if c},
            "histories": len(distinct),
            "mean_history_lines": float(np.mean([len([ln for ln in h.splitlines() if ln.strip()]) for h in hist]))
            if hist else 0.0,
            "mean_history_chars": float(np.mean([len(h) for h in hist])) if hist else 0.0,
        }
        if split != "train":
            out[split]["histories_in_train"] = len(distinct & train_hist)
    return out
