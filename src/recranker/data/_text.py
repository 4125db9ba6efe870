"""Strict, vectorised reading of raw text files, with errors that name the file and line.

Raw files are parsed with pandas' C tokenizer (fast enough for the ~1M-row ML-1M and
BookCrossing files); every cell is first read as a string so that a malformed value can be
reported with its physical line number instead of being silently coerced. Each frame returned
by :func:`read_table` carries a ``_line`` column (1-based line in the file) for that purpose.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recranker.errors import DataFormatError

LINE = "_line"
# Unix seconds a rating can carry: not before 1970, not after 2100-01-01 (a negative or huge value
# is a corrupt line, and it would silently reorder the leave-one-out split).
UNIX_TIME_RANGE = (0, 4_102_444_800)
_SEP_STANDIN = "\x1f"  # ASCII unit separator: stands in for multi-character separators ("::")


# A well-formed UTF-8 multi-byte sequence: Latin-1 text (MovieLens' u.item) practically never has one.
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_C1_CONTROL = re.compile("[\x80-\x9f]")


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_bytes(path: Path) -> bytes:
    """File content, transparently gunzipped for ``*.gz``; a missing/corrupt file is a user error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, None, "file not found") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataFormatError(path, None, f"not a valid gzip file ({exc})") from None
    return data


def decode(path: Path, data: bytes, encoding: str | tuple[str, ...]) -> str:
    """Decode ``data`` strictly; UTF-16, NUL bytes and undecodable bytes name the line."""
    if not data.strip():
        raise DataFormatError(path, None, "empty file")
    label = encoding if isinstance(encoding, str) else " or ".join(encoding)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataFormatError(path, 1, f"UTF-16 byte-order mark; expected {label} text")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataFormatError(
            path, _line_of(data, nul), f"NUL byte: not {label} text (UTF-16 or binary file?)"
        )
    # A tuple is tried in order: MovieLens ships Latin-1, but a re-saved copy is UTF-8, and
    # decoding UTF-8 as Latin-1 never fails, it only garbles every accented title.
    *first, last = (encoding,) if isinstance(encoding, str) else encoding
    failed: UnicodeDecodeError | None = None
    for enc in first:
        try:
            return data.decode(enc).removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            failed = failed or exc
            continue
    if failed is not None and _UTF8_MULTIBYTE.search(data):
        # UTF-8 text with a broken byte: read as Latin-1 it would garble every accented title
        raise DataFormatError(
            path, _line_of(data, failed.start),
            f"invalid UTF-8 (byte {data[failed.start]:#04x}) in a file that is otherwise UTF-8",
        )
    try:
        text = data.decode(last)
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            path,
            _line_of(data, exc.start),
            f"byte {data[exc.start]:#04x} cannot be decoded as {last}",
        ) from None
    if last.replace("-", "").lower() in ("latin1", "iso88591") and (c1 := _C1_CONTROL.search(text)):
        # bytes 0x80-0x9f are control codes in Latin-1: the file is in neither encoding
        raise DataFormatError(path, text.count("\n", 0, c1.start()) + 1,
                              f"byte {ord(c1.group()):#04x} is neither UTF-8 nor Latin-1 text")
    return text.removeprefix("\ufeff")


def read_table(
    path: Path,
    *,
    sep: str,
    encoding: str | tuple[str, ...],
    columns: Sequence[str] | None = None,
    header: bool = False,
    required: Sequence[str] = (),
    quoted: bool = False,
    nonempty: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a delimited file into string columns plus ``_line``; blank lines are skipped.

    ``header=False``: the file has exactly ``columns`` fields per line (more or fewer is an
    error naming the line). ``header=True``: the first line names the columns and each of
    ``required`` must be among them. ``quoted`` enables CSV quoting with backslash escapes (the
    BookCrossing dump writes ``\\"`` inside quoted titles); otherwise quotes are plain text.
    Every column in ``nonempty`` (default: ``required``, or all ``columns`` when headerless)
    must have a value on every line.
    """
    text = decode(path, read_bytes(path), encoding)
    if len(sep) > 1:
        if _SEP_STANDIN in text:
            at = text.index(_SEP_STANDIN)
            raise DataFormatError(path, text.count("\n", 0, at) + 1, "unexpected control byte 0x1f")
        text, sep = text.replace(sep, _SEP_STANDIN), _SEP_STANDIN
    quoting = {"quotechar": '"', "escapechar": "\\"} if quoted else {"quoting": csv.QUOTE_NONE}
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            engine="c",
            **quoting,
        )
    except pd.errors.ParserError as exc:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            exp, line, saw = (int(g) for g in m.groups())
            raise DataFormatError(path, line, f"expected {exp} fields, found {saw}") from None
        raise DataFormatError(path, None, f"cannot parse: {str(exc).splitlines()[-1]}") from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, None, "empty file") from None
    first = 2 if header else 1
    df.insert(0, LINE, np.arange(first, first + len(df), dtype=np.int64))
    if header:
        df.columns = [LINE] + [str(c).strip() for c in df.columns[1:]]
        missing = [c for c in required if c not in df.columns]
        if missing:
            have = ", ".join(df.columns[1:])
            raise DataFormatError(path, 1, f"missing column '{missing[0]}' (header has: {have})")
    else:
        assert columns is not None
        n = len(columns)
        have = df.shape[1] - 1
        if have > n:
            extra = (df.iloc[:, 1 + n :] != "").any(axis=1).to_numpy()
            row = int(np.flatnonzero(extra)[0])
            raise DataFormatError(path, int(df[LINE].iat[row]), f"expected {n} fields, found more")
        for i in range(have, n):
            df[i + 1] = ""
        df = df.iloc[:, : n + 1]
        df.columns = [LINE, *columns]
        required = required or columns
    data_cols = [c for c in df.columns if c != LINE]
    blank = (df[data_cols] == "").all(axis=1).to_numpy()
    df = df.loc[~blank]
    if df.empty:
        raise DataFormatError(path, None, "no data rows")
    for col in required if nonempty is None else nonempty:
        empty = (df[col].str.strip() == "").to_numpy()
        if empty.any():
            line = int(df[LINE].iat[int(np.flatnonzero(empty)[0])])
            raise DataFormatError(path, line, f"missing value for '{col}' (truncated line?)")
    return df.reset_index(drop=True)


def to_number(
    path: Path,
    df: pd.DataFrame,
    col: str,
    *,
    integer: bool = False,
    lo: float | None = None,
    hi: float | None = None,
) -> np.ndarray:
    """Column ``col`` as float64 (or int64); a non-numeric or out-of-range cell names its line.

    Arrow's string→float cast parses a million cells in tens of milliseconds; only when it
    fails does the slower element-wise pandas parser run, to find the offending line.
    """
    try:
        cells = pc.utf8_trim_whitespace(pa.array(df[col].array, type=pa.string()))
        values = pc.cast(cells, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        values = pd.to_numeric(df[col].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if integer:
        bad |= values != np.round(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        raise DataFormatError(
            path, int(df[LINE].iat[row]), f"{col} '{df[col].iat[row]}' is not {kind}"
        )
    if lo is not None or hi is not None:
        out = np.zeros(len(values), dtype=bool)
        if lo is not None:
            out |= values < lo
        if hi is not None:
            out |= values > hi
        if out.any():
            row = int(np.flatnonzero(out)[0])
            raise DataFormatError(
                path, int(df[LINE].iat[row]), f"{col} {df[col].iat[row]} outside [{lo:g}, {hi:g}]"
            )
    return values.astype(np.int64) if integer else values


def find_file(folder: Path, names: Sequence[str]) -> Path | None:
    """First of ``names`` that exists in ``folder`` (case-sensitive, as the archives ship them)."""
    for name in names:
        p = folder / name
        if p.is_file():
            return p
    return None
