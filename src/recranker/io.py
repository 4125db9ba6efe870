"""Atomic output helpers: everything is written to a temporary sibling, then renamed.

A crashed or rejected run therefore never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` on success only."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    work = tmp if is_dir else tmp / target.name
    try:
        yield work
        if is_dir:  # mkdtemp makes 0700 folders; give the output the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(work, 0o777 & ~umask)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(work, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indent, trailing newline), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line atomically; return the number of rows."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path, *, missing: str = "") -> Iterator[tuple[dict[str, Any], str]]:
    """Yield ``(row, "file:line")`` for every non-blank line.

    A missing file or a line that is not a JSON object fails with one line naming it; ``missing``
    says which stage writes the file.
    """
    from recranker.errors import DataFormatError, RecrankerError

    path = Path(path)
    if not path.is_file():
        raise RecrankerError(f"{path}: not found" + (f" ({missing})" if missing else ""))
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, n, f"invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataFormatError(path, n, "expected a JSON object")
            yield row, f"{path}:{n}"


def write_parquet(path: str | Path, df) -> None:
    """Parquet without the pandas index, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
