"""What every stage shares: error reporting and params loading."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from recranker.errors import RecrankerError

F = TypeVar("F", bound=Callable)

PARAMS_FILE = os.environ.get("RECRANKER_PARAMS", "params.yaml")


def user_errors(fn: F) -> F:
    """Turn a RecrankerError into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RecrankerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


_SAID: set[str] = set()


def params(*sections: str):
    """params.yaml, validated. Of ``sections`` (the top-level sections the calling stage runs on),
    those the file leaves out are said once, in one line: their defaults are used."""
    from stages.params import defaulted_sections, load_params

    loaded = load_params(PARAMS_FILE)
    missing = [s for s in defaulted_sections(loaded) if s in sections]
    note = f"note: {PARAMS_FILE}: no {', '.join(missing)} section{'s' if len(missing) > 1 else ''}; " \
        "the defaults are used"
    if missing and note not in _SAID:
        _SAID.add(note)
        print(note, file=sys.stderr, flush=True)
    return loaded

