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


def params():
    from stages.params import load_params

    return load_params(PARAMS_FILE)
