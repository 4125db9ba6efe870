"""Stage I/O shared by the training stages (`sft`, `dmpo-sft`, `dmpo`): how they start.
Not a stage: no training stage imports another stage module."""

from __future__ import annotations


def launch_training(stage: str, p) -> None:
    """With ``llm.launch.processes`` > 1, replace this process by that many ranks of ``recranker
    <stage>`` (torchrun, or accelerate with ``llm.launch.config``); inside a rank, do nothing."""
    from recranker.llm.launch import exec_launch, needs_launch

    launch = p.llm.launch
    if needs_launch(launch.processes):
        exec_launch(["stages", stage], launch.processes, launch.config)
