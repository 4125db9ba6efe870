"""Training on several processes (torchrun, accelerate launch, DeepSpeed): who writes, who waits.

A launcher starts N copies of a stage. They train together (the Trainer's DDP or ZeRO-3) and
then must publish *one* output: rank 0 makes the temporary directory, every rank saves into it
(a ZeRO-3 save is collective: the shards are gathered), and rank 0 alone renames it into place
after everyone is done; the others wait at a barrier. Work a stage does after training
(metrics, the valid AUC) runs on rank 0 only.

With one process (the CPU default) every function here is a no-op around :func:`atomic_path`, and
no process group is ever created. Rank and world size are read from the launcher's environment
(``RANK``, ``WORLD_SIZE``), so asking costs nothing; the process group is created by accelerate's
:class:`~accelerate.PartialState` (gloo on CPUs, NCCL on GPUs) the first time ranks must meet.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recranker.io import atomic_path


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


def _state():
    import torch
    from accelerate import PartialState

    # accelerate makes a CPU-only process group (gloo) only when asked for the CPU explicitly;
    # the Trainer asks the same way (use_cpu), so both share one state.
    return PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    """Every rank waits here until all arrive (nothing to do with one process)."""
    if world_size() > 1:
        _state().wait_for_everyone()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable value)."""
    if world_size() == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    _state()
    box = [obj]
    broadcast_object_list(box, from_process=0)
    return box[0]


@contextlib.contextmanager
def shared_output_dir(target: str | Path) -> Iterator[Path]:
    """:func:`recranker.io.atomic_path` for a directory that all ranks write together.

    Yields the same temporary directory on every rank; on success rank 0 renames it onto
    ``target`` once every rank has finished, and no rank returns before the rename (so what comes
    after may read ``target``). A rank that fails leaves the previous ``target`` in place; its
    launcher then stops the others.
    """
    if world_size() == 1:
        with atomic_path(target, is_dir=True) as tmp:
            yield tmp
        return
    if is_main():
        with atomic_path(target, is_dir=True) as tmp:
            broadcast(str(tmp))
            yield tmp
            barrier()  # everyone has written
        barrier()  # renamed: the others may go on
    else:
        tmp = Path(broadcast(None))
        yield tmp
        barrier()
        barrier()


def launch_info() -> dict[str, Any]:
    """How this process was launched, for a stage's metrics."""
    info: dict[str, Any] = {"processes": world_size()}
    if world_size() > 1:
        info["launcher"] = os.environ.get("RECRANKER_LAUNCHER", "external")
        info["distributed_type"] = str(_state().distributed_type).rsplit(".", 1)[-1]
        info["backend"] = _state().backend
    return info
