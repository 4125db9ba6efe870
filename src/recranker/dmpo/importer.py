"""The DMPO authors' released data (LLaMA-Factory format) → recranker preference records.

Three record kinds, told apart by the role of the file they come from (the SFT file and the test
file look alike):

* SFT records ``{"instruction", "input", "output": "<answer string>"}`` → instruction records
  (``messages`` + ``completion``) for `dmpo-sft`;
* preference records ``{"instruction", "input", "output": [chosen, rejected]}``, chosen
  ``"<p>, <n>"`` and rejected ``"<n>, <p>"``. The records of one sample share the history and the
  positive ``p`` and differ in the negative ``n`` (whose title, like ``p``'s, sits in the prompt in
  either order): they are grouped into one record with k pairs, keyed by the prompt with both
  candidate titles blanked out plus ``p``. The authors release one file per k, 100·k records each;
  the groups keep the order of their first record;
* pairwise test records whose ``output`` is only the preferred order ``"<a>, <b>"``: the rejected
  answer is the two candidates swapped, ``"<b>, <a>"`` (the split is the one ", " at which both
  titles appear in the prompt).

The user turn is ``instruction``, a newline and ``input`` (when non-empty); ``system`` and
``history`` ([[user, assistant], ...]) become earlier turns. Anything else stops with one line
naming the file and the record index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recranker.errors import DataFormatError, RecrankerError

BLANK = "\x00candidate\x00"


def _load(path: Path) -> tuple[list, list[int | None]]:
    """The records of a JSON list or JSON Lines file, and each record's line (JSON Lines; None in a
    JSON list, whose records are named by index). Not UTF-8, invalid JSON or no record at all is
    one line naming the file (and the line)."""
    if not path.is_file():
        raise RecrankerError(f"{path}: not found" if not path.exists() else f"{path}: not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, raw.count(b"\n", 0, exc.start) + 1, "not UTF-8") from None
    try:
        data = json.loads(text)
        lines: list[int | None] = [None] * len(data) if isinstance(data, list) else []
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("["):  # one JSON document: the parser's own position
            raise DataFormatError(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
        data, lines = [], []
        for n, ln in enumerate(text.splitlines(), 1):
            if not ln.strip():
                continue
            try:
                data.append(json.loads(ln))
            except json.JSONDecodeError as line_exc:
                raise DataFormatError(path, n, f"invalid JSON ({line_exc.msg})") from None
            lines.append(n)
    if not isinstance(data, list):
        raise DataFormatError(path, None, "expected a JSON list of records")
    if not data:
        raise DataFormatError(path, None, "no records (empty file or empty list)")
    return data, lines


def _messages(e: Any, path: Path, i: int, line: int | None = None) -> list[dict]:
    def bad(msg: str):
        return DataFormatError(path, line, f"record {i}: {msg}")

    if not isinstance(e, dict):
        raise bad("expected an object")
    instruction, inp = e.get("instruction"), e.get("input", "")
    if not isinstance(instruction, str) or not instruction:
        raise bad("'instruction' must be a non-empty string")
    if not isinstance(inp, str):
        raise bad("'input' must be a string")
    msgs = []
    if e.get("system"):
        if not isinstance(e["system"], str):
            raise bad("'system' must be a string")
        msgs.append({"role": "system", "content": e["system"]})
    for turn in e.get("history") or []:
        if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise bad("'history' must be [[user, assistant], ...]")
        msgs += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    msgs.append({"role": "user", "content": instruction + ("\n" + inp if inp else "")})
    return msgs


def _split_pair(chosen: str, rejected: str | None, prompt_text: str) -> tuple[str, str] | None:
    """(first, second) with chosen == "first, second" (and rejected == "second, first" if given)."""
    found = []
    at = chosen.find(", ")
    while at != -1:
        a, b = chosen[:at], chosen[at + 2 :]
        if a and b and (rejected == f"{b}, {a}" if rejected is not None else (a in prompt_text and b in prompt_text)):
            found.append((a, b))
        at = chosen.find(", ", at + 1)
    return found[0] if len(found) == 1 else None


def _output(e: dict, path: Path, i: int, line: int | None = None):
    if "output" not in e:
        raise DataFormatError(path, line, f"record {i}: no 'output'")
    return e["output"]


def import_sft(path: str | Path, name: str) -> list[dict]:
    """SFT records (output = answer string) → instruction records."""
    path = Path(path)
    rows = []
    data, lines = _load(path)
    for i, e in enumerate(data):
        msgs, out = _messages(e, path, i, lines[i]), _output(e, path, i, lines[i])
        if not isinstance(out, str) or not out:
            raise DataFormatError(path, lines[i], f"record {i}: SFT 'output' must be a non-empty answer string")
        rows.append({"id": f"{name}/sft/{i}", "dataset": name, "task": "dmpo-sft", "user_id": None,
                     "messages": msgs, "completion": out})  # fmt: skip
    return rows


def import_pairs(path: str | Path, name: str, split: str) -> list[dict]:
    """Preference records (output = [chosen, rejected]) grouped into samples of k pairs."""
    path = Path(path)
    groups: dict[tuple[str, str], list[dict]] = {}
    data, lines = _load(path)
    for i, e in enumerate(data):
        msgs, out = _messages(e, path, i, lines[i]), _output(e, path, i, lines[i])
        if not (isinstance(out, list) and len(out) == 2 and all(isinstance(o, str) and o for o in out)):
            raise DataFormatError(path, lines[i], f"record {i}: preference 'output' must be [chosen, rejected] strings")
        chosen, rejected = out
        split_at = _split_pair(chosen, rejected, "")
        if split_at is None:
            raise DataFormatError(path, lines[i], f"record {i}: rejected {rejected[:60]!r} is not chosen "
                                              f"{chosen[:60]!r} with its two candidates swapped")  # fmt: skip
        pos, neg = split_at
        text = json.dumps(msgs, ensure_ascii=False)
        key_text = text.replace(json.dumps(pos)[1:-1], BLANK).replace(json.dumps(neg)[1:-1], BLANK)
        groups.setdefault((key_text, pos), []).append({"prompt": msgs, "chosen": chosen, "rejected": rejected,
                                                       "negative": neg, "index": i})
    rows = []
    for j, pairs in enumerate(groups.values()):
        negs = [p["negative"] for p in pairs]
        if len(set(negs)) != len(negs):
            raise DataFormatError(path, None, f"record {pairs[-1]['index']}: the same negative twice in one sample")
        rows.append({"id": f"{name}/dmpo/{split}/{j}", "dataset": name, "user_id": None,
                     "pairs": [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs],
                     "meta": {"split": split, "source": path.name, "records": [p["index"] for p in pairs]}})
    return rows


def import_test_pairs(path: str | Path, name: str, split: str = "test") -> list[dict]:
    """Pairwise test records (output = the preferred order as a string) → one-pair records."""
    path = Path(path)
    rows = []
    data, lines = _load(path)
    for i, e in enumerate(data):
        msgs, out = _messages(e, path, i, lines[i]), _output(e, path, i, lines[i])
        if isinstance(out, list):
            return import_pairs(path, name, split)  # [chosen, rejected] test files group like training ones
        if not isinstance(out, str) or not out:
            raise DataFormatError(path, lines[i], f"record {i}: test 'output' must be the preferred order string")
        split_at = _split_pair(out, None, msgs[-1]["content"])
        if split_at is None:
            raise DataFormatError(path, lines[i], f"record {i}: output {out[:60]!r} is not two candidate titles of "
                                              "the prompt joined by ', '")  # fmt: skip
        a, b = split_at
        rows.append({"id": f"{name}/dmpo/{split}/{i}", "dataset": name, "user_id": None,
                     "pairs": [{"prompt": msgs, "chosen": out, "rejected": f"{b}, {a}"}],
                     "meta": {"split": split, "source": path.name, "records": [i]}})  # fmt: skip
    return rows
