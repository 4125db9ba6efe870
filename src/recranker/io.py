"""Atomic output helpers: everything is written to a temporary sibling, then renamed.

A crashed or rejected run therefore never leaves a half-written output behind; outputs that must
change together are swapped in under one journal (:func:`atomic_paths`), and a full disk is one
line naming the output.
"""

from __future__ import annotations

import contextlib
import errno
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
    with atomic_paths((target, is_dir)) as (work,):
        yield work


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full; pyarrow's OSError carries no errno."""
    return isinstance(exc, OSError) and (
        exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc))


class DiskFull(RecrankerError):
    """No space left while writing an output (named by the outermost atomic writer)."""


def _disk_full_error(targets: list[Path]) -> RecrankerError:
    names = ", ".join(str(t) for t in targets)
    return DiskFull(f"{names}: no space left on device while writing; nothing was replaced "
                          "(free some space and run again)")


_JOURNAL = ".recranker-swap"  # .recranker-swap.<pid>.json: the renames a multi-output commit makes


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_paths(*outputs: tuple[str | Path, bool]) -> Iterator[tuple[Path, ...]]:
    """:func:`atomic_path` for several outputs that must change together.

    ``outputs`` are ``(target, is_dir)`` pairs; one temporary path each is yielded. Only once
    every one is written are they swapped in, by renames listed first in a journal
    (``.recranker-swap.<pid>.json`` in the targets' common folder): a run killed during the
    swap leaves that journal, and the next writer of the same folder finishes the swap (and says
    so) before doing anything, so the outputs are never a mix of two runs. A full disk is one
    line naming the outputs, with none of them replaced.
    """
    targets = [Path(t) for t, _ in outputs]
    kinds = [bool(d) for _, d in outputs]
    for target, is_dir in zip(targets, kinds, strict=True):
        _refuse_wrong_kind(target, is_dir)
    common = Path(os.path.commonpath([t.parent.absolute() for t in targets]))
    common.mkdir(parents=True, exist_ok=True)
    finish_interrupted_swaps(common)
    holders: list[Path] = []
    try:
        works = []
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target)
            holder = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
            holders.append(holder)
            works.append(holder / ("new" if kinds[len(works)] else target.name))
        for work, is_dir in zip(works, kinds, strict=True):
            if is_dir:
                work.mkdir(mode=0o777 & ~_umask())
        try:
            yield tuple(works)
        except DiskFull:  # an inner writer's, naming its temporary: name the real outputs
            raise _disk_full_error(targets) from None
        except OSError as exc:
            if disk_full(exc):
                raise _disk_full_error(targets) from None
            raise
        for work, target, is_dir in zip(works, targets, kinds, strict=True):
            if not work.exists():
                raise RecrankerError(f"{target}: the writer produced no {'directory' if is_dir else 'file'}")
            _refuse_wrong_kind(target, is_dir)  # may have appeared while we worked
        swaps = [{"new": str(w.absolute()), "target": str(t.absolute()), "old": str((h / "old").absolute())}
                 for w, t, h in zip(works, targets, holders, strict=True)]
        journal = common / f"{_JOURNAL}.{os.getpid()}.json"
        # one rename per file output; a directory takes two (the old one aside first), so a kill
        # between them would leave no output at all: journal every swap of more than one rename
        if len(swaps) > 1 or any(t.is_dir() and not t.is_symlink() for t in targets):
            try:
                _write_synced(journal, json.dumps(swaps))
            except OSError as exc:
                if disk_full(exc):
                    raise _disk_full_error(targets) from None
                raise
        for swap in swaps:
            _swap_in(swap)
        journal.unlink(missing_ok=True)
    finally:
        for holder in holders:
            shutil.rmtree(holder, ignore_errors=True)


def _write_synced(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _swap_in(swap: dict[str, str]) -> None:
    """Move ``new`` onto ``target`` (the previous output aside to ``old`` first when it is a real
    directory: a rename cannot replace a non-empty one). Each step can be repeated after a kill."""
    new, target, old = Path(swap["new"]), Path(swap["target"]), Path(swap["old"])
    if not new.exists() and not new.is_symlink():
        return  # done already
    if target.is_dir() and not target.is_symlink():
        os.replace(target, old)
    elif target.is_symlink() and new.is_dir():
        target.unlink()
    os.replace(new, target)  # atomic for a file, a symlink or a missing target


def finish_interrupted_swaps(folder: str | Path) -> list[Path]:
    """Complete the swaps of writers killed mid-way in ``folder`` (see :func:`atomic_paths`).

    Every output of such a swap had been written in full before the first rename, so finishing
    it (rolling forward) is what the killed run would have done. Says so in one line each."""
    import sys

    done = []
    for journal in sorted(Path(folder).glob(f"{_JOURNAL}.*.json")):
        pid = journal.name[len(_JOURNAL) + 1:].removesuffix(".json")
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            swaps = json.loads(journal.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            journal.unlink(missing_ok=True)  # never completed being written: nothing was renamed
            continue
        for swap in swaps:
            _swap_in(swap)
            shutil.rmtree(Path(swap["old"]).parent, ignore_errors=True)
        journal.unlink(missing_ok=True)
        names = ", ".join(Path(s["target"]).name for s in swaps)
        print(f"{folder}: finished replacing {names} together (a run killed while swapping them in "
              "had written them all)", file=sys.stderr, flush=True)
        done.append(journal)
    return done


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
