"""The command that runs a training stage on several processes (``llm.launch``).

``dvc repro`` runs each stage as one command; a training stage whose ``llm.launch.processes`` is
above 1 re-executes itself under a launcher, which starts that many ranks of the same command:
``torchrun --standalone`` (one machine; gloo on CPUs, NCCL on GPUs) by default, or
``accelerate launch --config_file <config>`` (e.g. configs/accelerate_deepspeed_zero3.yaml, or a
multi-machine config). The ranks see ``WORLD_SIZE`` and never relaunch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from recranker.errors import RecrankerError

LAUNCHER_ENV = "RECRANKER_LAUNCHER"  # set for the ranks: which launcher started them (metrics)


def needs_launch(processes: int) -> bool:
    """True when this process should start ``processes`` ranks instead of training itself."""
    return processes > 1 and "WORLD_SIZE" not in os.environ


def launch_command(module_args: Sequence[str], processes: int, config: str | None = None,
                   python: str = sys.executable) -> list[str]:
    """argv that runs ``python -m <module_args>`` as ``processes`` ranks."""
    if processes < 1:
        raise RecrankerError(f"llm.launch.processes: must be >= 1 (got {processes})")
    if config is None:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                "-m", *module_args]
    if not Path(config).is_file():
        raise RecrankerError(f"llm.launch.config: {config}: file not found (an accelerate config, e.g. "
                             "configs/accelerate_deepspeed_zero3.yaml)")
    import yaml

    kind = str((yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}).get("distributed_type", "NO"))
    if kind in ("NO", "MULTI_CPU"):  # accelerate would start one process (CPU ranks need mpirun there)
        raise RecrankerError(f"llm.launch.config: {config} is a {kind} config, for which accelerate launch "
                             "starts one process; for CPU ranks set llm.launch.config: null (torchrun)")
    return [python, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(processes), "-m", *module_args]


def exec_launch(module_args: Sequence[str], processes: int, config: str | None = None) -> None:
    """Replace this process by the launcher (its exit status becomes the stage's)."""
    argv = launch_command(module_args, processes, config)
    env = {**os.environ, LAUNCHER_ENV: "torchrun" if config is None else f"accelerate:{config}"}
    print(f"launch: {processes} processes: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)
