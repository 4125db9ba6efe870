"""Experiment tracking glue: W&B when enabled, never required.

One W&B run per stage execution, grouped by the DVC experiment (``DVC_EXP_NAME``), named by
stage. ``WANDB_MODE`` comes from the environment (``disabled``/``offline``/``online``); if wandb
is missing or disabled, every call is a no-op. DVC metrics themselves are plain JSON files written
by the stages, so nothing here is on the critical path.
"""

from __future__ import annotations

import os
from typing import Any, Self


class Run:
    def __init__(self, stage: str, config: dict[str, Any], enabled: bool | None = None):
        self._wb = None
        mode = os.environ.get("WANDB_MODE", "disabled")
        if enabled is False or mode == "disabled":
            return
        try:
            import wandb
        except ImportError:  # tracking is optional
            return
        self._wb = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "recranker"),
            group=os.environ.get("DVC_EXP_NAME") or "workspace",
            name=stage,
            job_type=stage.split(":")[0],
            config=config,
            mode=mode,
            reinit="finish_previous",
        )

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._wb is not None:
            self._wb.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self._wb is not None:
            self._wb.summary.update(metrics)

    def table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self._wb is not None:
            import wandb

            self._wb.log({key: wandb.Table(columns=columns, data=rows)})

    def finish(self) -> None:
        if self._wb is not None:
            self._wb.finish()
            self._wb = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def start_run(stage: str, config: dict[str, Any], enabled: bool | None = None) -> Run:
    """Open a tracking run for ``stage`` (e.g. ``"backbone:ml-100k:mf"``) with its params
    (``enabled=False``: a no-op run, e.g. on every training rank but the first)."""
    return Run(stage, config, enabled)
