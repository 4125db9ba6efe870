"""What both trainers share: RecRanker's SFT (:mod:`recranker.llm.sft`) and DMPO
(:mod:`recranker.dmpo.train`) build their trl trainers from these pieces.

The Trainer arguments every run has (:func:`common_args`), the LoRA adapter (:func:`lora_config`),
the dtype the trained weights load in, resumable checkpoints outside the output directory
(:func:`checkpoint_dir`, :func:`run_fingerprint`, :func:`run_trainer`, :func:`remove_checkpoints`),
and the outputs written byte-stable for the same params (:func:`save_trained`,
:func:`write_training_log`). Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recranker.llm.config import LoraSettings, TrainSettings

TRAINING_LOG = "training_log.json"


def lora_config(s: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=s.r,
        lora_alpha=s.alpha,
        lora_dropout=s.dropout,
        target_modules=list(s.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def common_args(s: TrainSettings, output_dir: str | Path, has_eval: bool) -> dict[str, Any]:
    """TrainingArguments shared by our SFT/DMPO configs (CPU: no bf16 unless asked, no checkpointing).

    On a machine with CUDA the Trainer uses the GPUs; DeepSpeed is only touched when a config is
    given, so the CPU path never imports it.
    """
    import torch

    from recranker.llm.precision import default_device, resolve_bf16

    eval_strategy = "steps" if has_eval and s.eval_steps > 0 else "no"
    return dict(  # noqa: C408 - keyword form, as TrainingArguments spells them
        output_dir=str(output_dir),
        seed=s.seed,
        data_seed=s.seed,
        max_steps=s.max_steps,
        learning_rate=s.lr,
        lr_scheduler_type="cosine",
        warmup_steps=s.warmup_steps,
        weight_decay=s.weight_decay,
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        max_length=s.max_length,
        eval_strategy=eval_strategy,
        eval_steps=s.eval_steps or None,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=2,
        logging_steps=s.logging_steps,
        logging_first_step=True,
        report_to=list(s.report_to) or "none",
        # DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu) is not accelerate's "cpu" device
        use_cpu=not torch.cuda.is_available() and not s.deepspeed,
        bf16=resolve_bf16(s.bf16, default_device(), param="bf16"),
        # group_by_length: the dataset arrives in its training order (length_grouped)
        train_sampling_strategy="sequential" if s.group_by_length else "random",
        deepspeed=s.deepspeed,
        gradient_checkpointing=False,
        # every trainable weight (LoRA or full) gets a gradient each step: DDP need not search
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        dataset_num_proc=None,
    )


def checkpoint_dir(cfg: TrainSettings, kind: str) -> Path:
    """Where the run's resumable checkpoints go: the section's, or one temporary directory that
    every rank shares (rank 0 makes it)."""
    if cfg.checkpoint_dir:
        return Path(cfg.checkpoint_dir)
    from recranker.llm.distributed import broadcast, is_main

    return Path(broadcast(tempfile.mkdtemp(prefix=f"recranker-{kind}-") if is_main() else None))


def remove_checkpoints(ckpt_dir: Path) -> None:
    """After a successful run: rank 0 removes the checkpoints once every rank is done with them."""
    from recranker.llm.distributed import barrier, is_main

    barrier()
    if is_main():
        shutil.rmtree(ckpt_dir, ignore_errors=True)


def weights_dtype(*, lora: bool, bf16: bool):
    """The dtype the trained model is loaded in: fp32 master weights (mixed precision), except a
    LoRA base on a GPU with bf16, whose frozen weights need no fp32 copy (half the memory: 14 GB
    instead of 28 at 7B); the adapter itself is kept in fp32 by peft."""
    import torch

    if lora and bf16 and torch.cuda.is_available():
        return torch.bfloat16
    return torch.float32


def trainable_parameters(model) -> int:
    """Trainable parameters; under ZeRO-3 a rank holds an empty partition, ``ds_numel`` the size."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)


def run_fingerprint(cfg: TrainSettings, *data: Any, models: Sequence[str | Path] = ()) -> dict[str, Any]:
    """What a checkpoint must have been made with to be resumed: the settings (but where
    checkpoints and logs go), the data and the starting model files."""
    from recranker.llm.checkpoints import digest, hash_files

    settings = {k: v for k, v in cfg.settings().items() if k not in ("checkpoint_dir", "report_to")}
    return {"settings": settings, "data": [digest({"rows": list(d)}) for d in data],
            "models": [hash_files(m) for m in models]}


def run_trainer(trainer, ckpt_dir: Path, *, fingerprint: dict[str, Any]) -> tuple[Any, float, str | None]:
    """Train, resuming from the newest complete checkpoint in ``ckpt_dir`` made with the same
    ``fingerprint`` (:func:`recranker.llm.checkpoints.resume_point`); return (result, seconds, resumed)."""
    from recranker.llm.checkpoints import restore_active_adapter, resume_point
    from recranker.llm.distributed import barrier, broadcast, is_main

    # One rank decides (it may remove or set aside checkpoints), the others follow its answer.
    resume = broadcast(resume_point(ckpt_dir, fingerprint) if is_main() else None)
    barrier()
    if resume is not None:
        restore_active_adapter(trainer.model, resume)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    return result, time.perf_counter() - t0, resume


def summarize_log(log_history: list[dict]) -> dict[str, Any]:
    """Loss curve (step, loss) and final/eval losses from a Trainer's ``state.log_history``."""
    curve = [{"step": int(h["step"]), "loss": float(h["loss"])} for h in log_history if "loss" in h]
    evals = [{"step": int(h["step"]), "eval_loss": float(h["eval_loss"])} for h in log_history if "eval_loss" in h]
    return {
        "curve": curve,
        "eval_curve": evals,
        "final_train_loss": curve[-1]["loss"] if curve else None,
        "eval_loss": evals[-1]["eval_loss"] if evals else None,
    }


def _untimed(obj: Any) -> Any:
    """OBJ without wall-clock keys (seconds, *_runtime, *_per_second) or machine-local paths."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items()
                if k not in {"seconds", "checkpoint_dir"} and not k.endswith(("_runtime", "_per_second"))}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def write_training_log(out_dir: Path, payload: dict) -> None:
    """``training_log.json`` in the model directory, a pure function of data, settings and seed
    (timings live in the stage's metrics only), so the same params give the same bytes. Rank 0 only."""
    from recranker.llm.distributed import is_main

    if not is_main():
        return
    (out_dir / TRAINING_LOG).write_text(
        json.dumps(_untimed(payload), indent=2, sort_keys=True, default=str) + "\n")


def stable_adapter_config(out_dir: Path) -> None:
    """Sort the set-valued fields of a saved ``adapter_config.json``: peft keeps target_modules
    as a Python set, so their order (and the file's bytes) would follow the process's hash seed."""
    path = Path(out_dir) / "adapter_config.json"
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "modules_to_save"):
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(cfg[key])
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_trained(trainer, out_dir: Path, tokenizer=None, drop_adapters: Sequence[str] = ()) -> None:
    """The trained model (adapter or full) and its tokenizer, without Trainer's pickled
    ``training_args.bin`` (machine-local paths, not loadable without trusting a pickle, different
    bytes every run) or the adapters in ``drop_adapters`` (DPO's frozen "ref" copy).

    Every rank must call it: under ZeRO-3 ``save_model`` gathers the shards (the full weights,
    never the empty local partitions); rank 0 alone writes and tidies the files.
    """
    from recranker.llm.distributed import barrier

    trainer.save_model(str(out_dir))
    barrier()
    if not trainer.is_world_process_zero():
        return
    out = Path(out_dir)
    (out / "training_args.bin").unlink(missing_ok=True)
    for name in drop_adapters:  # peft saves each extra adapter in a subfolder of its name
        shutil.rmtree(out / name, ignore_errors=True)
    stable_adapter_config(out)
    if tokenizer is not None:
        from recranker.llm.model import save_tokenizer

        save_tokenizer(tokenizer, out)
