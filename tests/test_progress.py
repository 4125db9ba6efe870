"""recranker.progress: a bar with an ETA on a terminal, a plain line a minute in a log."""

from __future__ import annotations

import io
import time

from recranker.progress import progress_bar, training_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_not_carriage_returns():
    log = io.StringIO()
    bar = progress_bar(5, "scoring", "prompt", file=log, log_interval_s=0)
    for _ in range(5):
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0].startswith("scoring:") and "0/5" in lines[0]
    assert all(line.startswith("scoring:") for line in lines)  # no blank or clearing lines
    assert "5/5" in lines[-1] and "prompt/s" in lines[-1]


def test_a_log_gets_one_line_a_minute_plus_the_first_and_last():
    log = io.StringIO()
    bar = progress_bar(10_000, "scoring", "prompt", file=log)  # the default interval: 60 s
    for _ in range(10_000):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "0/10000" in lines[0] and "10000/10000" in lines[1]


def test_a_terminal_gets_a_redrawn_bar_with_an_eta():
    term = _Terminal()
    bar = progress_bar(4, "scoring", "prompt", file=term)
    for _ in range(2):
        time.sleep(0.6)
        bar.update(1)
    bar.refresh()
    assert "\r" in term.getvalue() and "<" in term.getvalue()  # tqdm's "elapsed<remaining"
    bar.close()


def test_training_progress_ticks_per_optimiser_step_and_shows_the_loss():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    log = io.StringIO()
    cb = training_progress("sft", file=log, log_interval_s=0)
    args = TrainingArguments(output_dir="/nonexistent-unused", report_to="none")
    state = TrainerState(max_steps=3, global_step=1)  # resumed from a checkpoint at step 1
    control = TrainerControl()
    cb.on_train_begin(args, state, control)
    for step in (2, 3):
        state.global_step = step
        cb.on_log(args, state, control, logs={"loss": 0.5 / step})
        cb.on_step_end(args, state, control)
    cb.on_train_end(args, state, control)
    lines = log.getvalue().splitlines()
    assert "1/3" in lines[0]  # a resumed run starts at its checkpoint
    assert "3/3" in lines[-1] and "loss=0.1667" in lines[-1] and "step" in lines[-1]
