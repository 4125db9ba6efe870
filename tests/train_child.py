"""A tiny SFT or DMPO run in its own process, for the kill -9 tests (tests/test_checkpoints.py) and,
under torchrun, the several-process tests (tests/test_distributed.py).

    python tests/train_child.py KIND SPEC.json [HOOK MARKER]

KIND is ``sft`` or ``dmpo``; SPEC holds ``base``, ``sft`` (DMPO's start), ``out`` and the
settings. HOOK ``save:N`` stops inside the save of ``checkpoint-N`` (model, optimizer and RNG
written, ``trainer_state.json`` not yet); ``step:N`` stops at the start of step N. At the hook the
process writes MARKER and sleeps, so the test can ``kill -9`` it exactly there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sft_records(n: int = 10) -> list[dict]:
    return [{"id": f"r{i}", "task": "pointwise",
             "messages": [{"role": "system", "content": "You rate movies."},
                          {"role": "user", "content": f"The user watched film {i}. Rate film {i + 1} (1-5)."}],
             "completion": str(1 + i % 5)} for i in range(n)]


def dmpo_records(n: int = 8, k: int = 3) -> list[dict]:
    """DMPO samples as the `preferences` stage writes them: k pairwise prompts per sample."""
    return [{"pairs": [{"prompt": [{"role": "user", "content": f"The user liked film {i}. Order film {i + 1} "
                                                               f"and film {100 + j}."}],
                        "chosen": f"film {i + 1}, film {100 + j}", "rejected": f"film {100 + j}, film {i + 1}"}
                       for j in range(k)]} for i in range(n)]


def settings(cls, flat: dict):
    """CLS's hyper-parameters from FLAT, with the run context (seed, checkpoint_dir) it also holds."""
    from dataclasses import fields

    from recranker.llm.config import RunContext

    context = {f.name for f in fields(RunContext)}
    return cls(**{k: v for k, v in flat.items() if k not in context}).with_run(
        **{k: v for k, v in flat.items() if k in context})


def run(kind: str, spec: dict, callbacks=()) -> dict:
    from recranker.dmpo.config import DMPOSettings
    from recranker.dmpo.train import train_dmpo
    from recranker.llm.config import SFTSettings
    from recranker.llm.sft import train_sft

    if kind == "sft":
        return train_sft(spec["base"], sft_records(), [], spec["out"], settings(SFTSettings, spec["settings"]),
                         callbacks=callbacks)
    return train_dmpo(spec["sft"], spec["base"], dmpo_records(), spec["out"],
                      settings(DMPOSettings, spec["settings"]), callbacks=callbacks)


def _stop(marker: Path) -> None:
    marker.write_text(str(os.getpid()))
    time.sleep(600)  # the test kills us here


def install_hook(hook: str, marker: Path) -> list:
    what, n = hook.split(":")
    n = int(n)
    if what == "save":
        from transformers.trainer_callback import TrainerState

        original = TrainerState.save_to_json

        def save_to_json(self, json_path):
            if Path(json_path).parent.name == f"checkpoint-{n}":
                _stop(marker)
            return original(self, json_path)

        TrainerState.save_to_json = save_to_json
        return []
    from transformers import TrainerCallback

    class StopAtStep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step + 1 == n:
                _stop(marker)

    return [StopAtStep()]


if __name__ == "__main__":
    kind, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    cbs = install_hook(sys.argv[3], Path(sys.argv[4])) if len(sys.argv) > 4 else []
    report = run(kind, spec, cbs)
    if spec.get("report") and os.environ.get("RANK", "0") == "0":  # what the 1-vs-N-process tests compare
        Path(spec["report"]).write_text(json.dumps(report, default=str))
