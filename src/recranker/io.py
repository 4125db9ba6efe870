"""Atomic output helpers: everything is written to a temporary sibling, then renamed.

A crashed or rejected run therefore never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from recranker.errors import RecrankerError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Remove ``.<name>.<pid>.XXXX`` temporaries of ``target`` left by a killed writer.

    Only our own pattern, and only when the process that made it is gone: a concurrent writer
    of the same output keeps its temp. Returns what was removed.
    """
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    prefix = f".{target.name}."
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*"):
        pid, _, rest = tmp.name[len(prefix):].partition(".")
        # mkdtemp's suffix has no dots: ".a.5.<pid>.x" (a temp of "a.5") is not one of "a"'s
        if not (pid.isdigit() and rest and "." not in rest) or _pid_alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _refuse_wrong_kind(target: Path, is_dir: bool) -> None:
    if target.is_symlink():
        return  # a link is replaced, its target never touched
    if not is_dir and target.is_dir():
        raise RecrankerError(f"{target}: is a directory; this output is a file (choose another path)")
    if is_dir and target.exists() and not target.is_dir():
        raise RecrankerError(f"{target}: is a file; this output is a directory (choose another path)")


@contextlib.contextmanager
def atomic_path(target: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` on success only.

    Never deletes what it did not create: an existing ``target`` of the other kind (a directory
    where a file goes, or a file where a directory goes) is refused before any work, with one
    line. A directory output replaces the previous directory of the same output. The temporary
    (``.<name>.<pid>.XXXX``) is removed on failure, and a killed writer's on the next run.
    """
    target = Path(target)
    _refuse_wrong_kind(target, is_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    work = tmp if is_dir else tmp / target.name
    try:
        yield work
        if is_dir:  # mkdtemp makes 0700 folders; give the output the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(work, 0o777 & ~umask)
        _refuse_wrong_kind(target, is_dir)  # may have appeared while we worked
        if is_dir and target.is_dir() and not target.is_symlink():
            # Move the old output aside first, so the swap itself is one rename.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
            os.replace(target, old / "old")
            os.replace(work, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if is_dir and target.is_symlink():
                target.unlink()
            os.replace(work, target)  # atomic for a file, a symlink or a missing target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> None:
    """Deterministic JSON (sorted keys, fixed indent, trailing newline), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


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
    from recranker.errors import DataFormatError

    path = Path(path)
    if not path.is_file():
        raise RecrankerError(f"{path}: not found" + (f" ({missing})" if missing else ""))
    with path.open("rb") as fh:  # bytes: a bad encoding is reported with its line
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(path, n, f"not UTF-8 (byte {exc.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, n, f"invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataFormatError(path, n, "expected a JSON object")
            yield row, f"{path}:{n}"


def _unreadable(path: Path, kind: str, exc: BaseException) -> RecrankerError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RecrankerError(f"{path}: not a readable {kind} file ({detail[:200]})")


def _not_found(path: Path, missing: str) -> RecrankerError:
    return RecrankerError(f"{path}: not found" + (f" ({missing})" if missing else ""))


def read_parquet(path: str | Path, *, missing: str = "", **kwargs):
    """``pandas.read_parquet`` whose every failure (missing, truncated, not parquet) names the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise _not_found(path, missing)
    try:
        return pd.read_parquet(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise _unreadable(path, "parquet", exc) from None


def read_npy(path: str | Path, *, missing: str = ""):
    """``numpy.load`` of one ``.npy`` array (no pickles) whose every failure names the file."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise _not_found(path, missing)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - ValueError/EOFError/OSError for a damaged file
        raise _unreadable(path, ".npy", exc) from None


def read_safetensors(path: str | Path, *, missing: str = "") -> dict:
    """``safetensors.torch.load_file`` whose every failure names the file."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise _not_found(path, missing)
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError/OSError for a damaged file
        raise _unreadable(path, "safetensors", exc) from None
