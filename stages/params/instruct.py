"""params.yaml → sampling.* and instruct.* (stages `sample`, `instruct`). Owned by the instructions engineer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict


class SamplingParams(Strict):
    mode: Literal["uniform", "adaptive"] = "uniform"
    n_users: int = Field(200, ge=1)


class InstructParams(Strict):
    tasks: list[Literal["pointwise", "pairwise", "listwise"]] = ["pointwise"]
    history_len: int = Field(10, ge=1)
