"""The hyper-parameters of LLM training, declared once: LoRA (:class:`LoraSettings`), the optimiser
knobs every training section has (:class:`TrainSettings`) and RecRanker's SFT (:class:`SFTSettings`,
params.yaml ``llm.sft``); the DMPO sections build on them in :mod:`recranker.dmpo.config`.

A section is what the trainers take: a stage passes its params section as is, with the run's context
(:class:`RunContext`: seed, checkpoint directory, trackers, DeepSpeed) attached by
:meth:`TrainSettings.with_run` — the context is not a hyper-parameter, so it is not a params key.
Each knob's type, range and doc are declared once (the ``Annotated`` types below); a section only
chooses its defaults. Light on purpose (pydantic only): the params schema imports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import Field, PrivateAttr

from recranker.schema import Section

# An inference dtype: auto = bf16 where the device computes it natively, else fp32
# (recranker.llm.precision decides; the final norm and LM head always stay fp32).
Precision = Literal["auto", "float32", "bfloat16"]

# -- one declaration per optimiser knob (a section gives its default) ------------------------

MaxSteps = Annotated[int, Field(ge=1, description="optimiser steps")]
LearningRate = Annotated[float, Field(gt=0, description="peak learning rate (cosine decay after the warm-up)")]
WarmupSteps = Annotated[int, Field(ge=0, description="linear warm-up steps")]
BatchSize = Annotated[int, Field(ge=1, description="examples per device and step")]
GradAccum = Annotated[int, Field(ge=1, description="batches accumulated per optimiser step")]
MaxLength = Annotated[int, Field(ge=16, description="longest example in tokens: longer ones are refused, never truncated")]
SaveSteps = Annotated[int, Field(ge=1, description="checkpoint interval (resume after an interruption)")]
LoggingSteps = Annotated[int, Field(ge=1, description="loss logging interval")]
BF16 = Annotated[bool | Literal["auto"], Field(
    description="bf16 autocast: true, false, or auto = where the device computes bf16 natively "
                "(recranker.llm.precision; benchmarks/training.py for the trade-off)")]
Method = Annotated[Literal["lora", "full"], Field(description="LoRA adapter or full fine-tuning")]
TargetModules = Annotated[list[str], Field(min_length=1, description="the linear layers LoRA adapts")]


class LoraSettings(Section):
    """The LoRA adapter (peft)."""

    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: TargetModules = Field(["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass(frozen=True)
class RunContext:
    """Where and how one training run happens — not a hyper-parameter of any section."""

    seed: int = 42
    checkpoint_dir: str | None = None  # where resumable checkpoints live; None: a temp dir
    report_to: tuple[str, ...] = ()  # e.g. ("wandb",) when tracking is on
    deepspeed: str | None = None  # GPU only: path of a DeepSpeed JSON (configs/deepspeed_zero3.json)

    def __post_init__(self):  # a list becomes a tuple: the context stays hashable
        object.__setattr__(self, "report_to", tuple(self.report_to))


Settings = TypeVar("Settings", bound="TrainSettings")


def trainer_section(cls: type[Settings]) -> type[Settings]:
    """Mark a library training section: its fields are the trainer's knobs
    (:meth:`TrainSettings.settings`). A stage's params class that extends it with its own knobs
    (``llm.sft.max_eval``) inherits the mark unchanged, so those knobs stay out of the settings."""
    cls.trainer_knobs = frozenset(cls.model_fields)
    return cls


@trainer_section
class TrainSettings(Section):
    """Optimiser knobs every training section has (defaults: ``llm.sft``'s, as in params.yaml).

    The trainers also read ``eval_steps``, ``weight_decay``, ``group_by_length`` and (SFT)
    ``loss_average``: a section either declares them as knobs (:class:`SFTSettings`) or fixes them
    as class constants.
    """

    trainer_knobs: ClassVar[frozenset[str]]  # set by @trainer_section

    max_steps: MaxSteps = 30
    lr: LearningRate = 2e-4
    warmup_steps: WarmupSteps = 3
    batch_size: BatchSize = 2
    grad_accum: GradAccum = 2
    max_length: MaxLength = 768
    save_steps: SaveSteps = 10
    logging_steps: LoggingSteps = 1
    bf16: BF16 = False

    _run: RunContext = PrivateAttr(default_factory=RunContext)

    def with_run(self, **context: Any):
        """This section for one run: the same hyper-parameters with the run's :class:`RunContext`."""
        out = self.model_copy()
        out._run = RunContext(**context)
        return out

    @property
    def run(self) -> RunContext:
        return self._run

    @property
    def seed(self) -> int:
        return self._run.seed

    @property
    def checkpoint_dir(self) -> str | None:
        return self._run.checkpoint_dir

    @property
    def report_to(self) -> tuple[str, ...]:
        return self._run.report_to

    @property
    def deepspeed(self) -> str | None:
        return self._run.deepspeed

    def settings(self) -> dict[str, Any]:
        """What a run was made with (``training_log.json``, the resume fingerprint): the knobs the
        library section declares (:func:`trainer_section`; a stage's own knobs, e.g.
        ``llm.sft.max_eval``, are not the trainer's), the constants it fixes, and the run's context."""
        out = self.model_dump(include=set(self.trainer_knobs))
        for name in ("eval_steps", "weight_decay", "group_by_length", "lora"):
            if name not in out and hasattr(self, name):
                value = getattr(self, name)
                out[name] = value.model_dump() if isinstance(value, Section) else value
        return {**out, **asdict(self._run)}


@trainer_section
class SFTSettings(TrainSettings):
    """RecRanker's instruction tuning (params.yaml ``llm.sft``): trl's SFTTrainer, completion-only loss."""

    method: Method = "lora"
    lora: LoraSettings = LoraSettings()
    eval_steps: int = Field(0, ge=0, description="evaluation interval; 0: evaluate only at the end")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    group_by_length: bool = Field(
        True, description="batches of similar lengths: less padding (listwise instructions are ~2x longer)")
    loss_average: Literal["token", "instruction"] = Field(
        "token", description="SFT loss: mean over answer tokens (trl's) or over instructions, each answer's "
                             "tokens averaged first, so a one-token Yes/No weighs as much as a 100-token list")
