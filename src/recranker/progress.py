"""Progress of the long stages (rank, SFT, DMPO, pref-eval): one kind of bar for all of them.

On a terminal it is a tqdm bar with an ETA. When stderr is not a terminal (a DVC log, CI, a file)
a carriage-return bar is useless — the log fills with overwritten fragments, or shows nothing
until the end — so the same bar prints one plain line (count, rate, elapsed, ETA) every
``LOG_INTERVAL_S`` seconds, plus its first and last line.

:func:`training_progress` drives such a bar from a transformers ``Trainer``, one tick per optimiser
step, with the latest logged loss; pass it in ``callbacks`` (the Trainer's own bar is off:
``disable_tqdm=True`` in ``recranker.llm.sft``).
"""

from __future__ import annotations

import functools
import sys
from typing import IO, Any

from tqdm import tqdm  # the plain one: _LogLines overrides its text display

LOG_INTERVAL_S = 60.0  # one line a minute in a log
TTY_INTERVAL_S = 1.0  # a terminal redraws in place, so it can refresh often


class _LogLines(tqdm):
    """A tqdm that writes whole lines (no carriage returns) and nothing to clear."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "":  # tqdm clearing its bar: a log has nothing to clear
            return False
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable and hasattr(self, "last_print_t"):
            self._ema_dt = lambda: None  # the last line: the overall rate, as tqdm's own final line
            self.display()
        super().close()  # leave=False: tqdm's own close then only "clears" (see display)


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(total: int | None, desc: str, unit: str = "it", *, initial: int = 0,
                 file: IO[str] | None = None, log_interval_s: float = LOG_INTERVAL_S,
                 disable: bool = False) -> tqdm:
    """A progress bar on ``file`` (default stderr): tqdm with an ETA on a terminal, a plain
    line every ``log_interval_s`` seconds otherwise. Use it like tqdm (``update``, ``close``,
    ``set_postfix(..., refresh=False)`` — a refresh prints a line at once in a log)."""
    stream = sys.stderr if file is None else file
    common: dict[str, Any] = dict(total=total, desc=desc, unit=unit, initial=initial, file=stream,  # noqa: C408
                                  disable=disable, dynamic_ncols=True)
    if _is_tty(stream):
        return tqdm(mininterval=TTY_INTERVAL_S, **common)
    # miniters=1: check the clock on every update (tqdm's dynamic miniters would skip updates
    # when they come fast, and a slow stage's first line could then wait far past the minute).
    return _LogLines(mininterval=log_interval_s, maxinterval=float("inf"), miniters=1, leave=False,
                     ascii=True, **common)


@functools.cache
def _callback_class():
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        """One tick per optimiser step of a transformers Trainer, with the last logged loss."""

        def __init__(self, desc: str, file: IO[str] | None = None, log_interval_s: float = LOG_INTERVAL_S):
            self.desc, self.file, self.log_interval_s = desc, file, log_interval_s
            self.bar: tqdm | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:  # one bar for a multi-process (DeepSpeed) run
                # initial: a resumed run starts at its checkpoint's step, so the ETA counts what is left
                self.bar = progress_bar(state.max_steps, self.desc, "step", initial=state.global_step,
                                        file=self.file, log_interval_s=self.log_interval_s)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingProgress


def training_progress(desc: str, *, file: IO[str] | None = None, log_interval_s: float = LOG_INTERVAL_S):
    """A ``transformers.TrainerCallback`` showing a Trainer's optimiser steps as :func:`progress_bar`
    does (transformers is imported only here, so the scorers' import of this module stays light)."""
    return _callback_class()(desc, file=file, log_interval_s=log_interval_s)
