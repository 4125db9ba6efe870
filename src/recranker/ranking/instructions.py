"""Test instructions (docs/CONTRACTS.md) as typed objects, validated with file:line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recranker.errors import DataFormatError
from recranker.tasks import TASKS


@dataclass(frozen=True)
class Instruction:
    id: str
    task: str
    user_id: int
    messages: tuple[dict, ...]
    candidates: tuple[int, ...]
    meta: dict = field(default_factory=dict, hash=False, compare=False)
    label: Any = None


def parse_instruction(row: Mapping[str, Any], where: str) -> Instruction:
    """Validate one test-instruction record; ``where`` ("file:line") names it in errors."""
    path, _, line = where.rpartition(":")
    lineno = int(line) if line.isdigit() else None
    path = path if lineno is not None else where

    def bad(problem: str) -> DataFormatError:
        return DataFormatError(path, lineno, problem)

    for key in ("id", "task", "user_id", "messages", "candidates"):
        if key not in row:
            raise bad(f"missing key '{key}'")
    if row["task"] not in TASKS:
        raise bad(f"unknown task {row['task']!r}")
    msgs = row["messages"]
    if not isinstance(msgs, list) or not msgs or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in msgs
    ):
        raise bad("messages must be a non-empty list of {role, content}")
    cands = row["candidates"]
    if not isinstance(cands, list) or not cands:
        raise bad("candidates must be a non-empty list of item ids")
    try:
        cands_t = tuple(int(c) for c in cands)
        uid = int(row["user_id"])
    except (TypeError, ValueError):
        raise bad("user_id and candidates must be integers") from None
    if len(set(cands_t)) != len(cands_t):
        raise bad("duplicate candidates")
    if row["task"] == "pairwise" and len(cands_t) != 2:
        raise bad(f"a pairwise instruction needs 2 candidates, got {len(cands_t)}")
    return Instruction(
        id=str(row["id"]),
        task=row["task"],
        user_id=uid,
        messages=tuple({"role": m["role"], "content": m["content"]} for m in msgs),
        candidates=cands_t,
        meta=dict(row.get("meta") or {}),
        label=row.get("label"),
    )


def _prompts(instructions: Sequence[Instruction]):
    from recranker.llm.backends.base import Prompt

    return [Prompt.from_messages(ins.messages, group=ins.user_id) for ins in instructions]
