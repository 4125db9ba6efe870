"""RecRanker's three ranking tasks, in the one order every file, table and seed derivation uses."""

from __future__ import annotations

from typing import Literal

Task = Literal["pointwise", "pairwise", "listwise"]
TASKS: tuple[str, ...] = ("pointwise", "pairwise", "listwise")
