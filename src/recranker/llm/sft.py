"""Supervised instruction tuning (RecRanker §3.3) with trl's SFTTrainer.

Instruction records (docs/CONTRACTS.md: ``messages`` = prompt turns, ``completion`` = the answer
string) become trl's conversational prompt/completion examples, so the chat template is applied by
trl and the loss covers the completion tokens only. LoRA (peft) or full fine-tuning; cosine
schedule with warm-up; checkpoints every ``save_steps`` in ``checkpoint_dir`` (outside the output
directory, which the caller replaces atomically) and automatic resume from the last one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recranker.errors import ParamError, RecrankerError
from recranker.llm.config import LoraSettings, TrainSettings

TRAINING_LOG = "training_log.json"


def to_prompt_completion(record: dict[str, Any], where: str = "record") -> dict[str, Any]:
    """One instruction record → trl's conversational ``{"prompt", "completion"}`` example."""
    messages = record.get("messages")
    completion = record.get("completion")
    if not isinstance(messages, list) or not messages:
        raise RecrankerError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise RecrankerError(f"{where}: every message needs string 'role' and 'content'")
    if messages[-1]["role"] == "assistant":
        raise RecrankerError(f"{where}: 'messages' must not end with an assistant turn (the answer is 'completion')")
    if not isinstance(completion, str) or not completion:
        raise RecrankerError(f"{where}: 'completion' must be a non-empty string")
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages]
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion}]}


def check_lengths(tokenizer, records: Sequence[dict], max_length: int) -> int:
    """Raise if any record's prompt + completion exceeds ``max_length`` tokens; return the longest.

    trl truncates the end of a too-long example, i.e. the answer that completion-only loss
    trains on: such an example silently teaches nothing, so this fails loudly instead.
    """
    longest, over = 0, []
    for i, r in enumerate(records):
        ex = to_prompt_completion(r, f"record {i}")
        n = len(tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True,
                                              return_dict=True)["input_ids"])
        longest = max(longest, n)
        if n > max_length:
            over.append((n, r.get("id", i), r.get("task", "?")))
    if over:
        n, rid, _ = max(over)
        tasks = sorted({t for _, _, t in over})
        raise RecrankerError(
            f"max_length={max_length} would cut the answer of {len(over)} of {len(records)} instructions "
            f"({', '.join(tasks)}; longest {n} tokens, id {rid}); raise it to at least {n}"
        )
    return longest


def split_eval(records: Sequence[dict], fraction: float, max_eval: int, seed: int) -> tuple[list, list]:
    """Hold out ``min(max_eval, round(fraction·n))`` records (at least one if both allow it)."""
    n = len(records)
    n_eval = min(max_eval, round(fraction * n))
    if fraction > 0 and max_eval > 0 and n > 1:
        n_eval = max(1, n_eval)
    perm = np.random.default_rng(seed).permutation(n)
    held = set(perm[:n_eval].tolist())
    train = [r for i, r in enumerate(records) if i not in held]
    evals = [r for i, r in enumerate(records) if i in held]
    return train, evals


def length_grouped(records: Sequence[dict], batch_size: int, n_examples: int, seed: int) -> list[dict]:
    """The ``n_examples`` records training will see, in batches of similar length.

    The records are those a shuffled pass (epochs of seeded permutations) would draw first; only
    their grouping changes: sorted by length (characters, a proxy for tokens), cut into batches,
    and the batches shuffled. Unlike transformers' LengthGroupedSampler, whose mega-batches put
    the longest examples first, a short run sees the same task mix as random batches.
    """
    if not records:
        return []
    rng = np.random.default_rng(seed)
    n = len(records)
    drawn = np.concatenate([rng.permutation(n) for _ in range(-(-n_examples // n))])[:n_examples]
    size = [len(json.dumps(records[i].get("messages"))) + len(str(records[i].get("completion"))) for i in drawn]
    by_len = drawn[np.argsort(size, kind="stable")]
    batches = [by_len[s : s + batch_size] for s in range(0, len(by_len), batch_size)]
    return [records[i] for b in rng.permutation(len(batches)) for i in batches[b]]


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


def check_target_modules(model, names: Sequence[str]) -> None:
    """Refuse LoRA target modules the model does not have (peft would fail deep inside, or
    silently adapt nothing); one line naming the model's own candidates."""
    modules = [name for name, _ in model.named_modules() if name]
    unknown = [n for n in names if not any(m == n or m.endswith("." + n) for m in modules)]  # peft's match
    if unknown:
        linear = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                         if type(mod).__name__ == "Linear"})
        raise ParamError("lora.target_modules", f"{', '.join(map(repr, unknown))} not in the model "
                                                f"(its linear layers: {', '.join(linear)})")


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


def _dataset(records: Iterable[dict], name: str):
    from datasets import Dataset

    rows = [to_prompt_completion(r, f"{name}[{i}] (id={r.get('id', '?')})") for i, r in enumerate(records)]
    if not rows:
        raise RecrankerError(f"{name}: no instruction records")
    return Dataset.from_list(rows)


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


def instruction_mean_trainer():
    """trl's SFTTrainer whose training loss averages each instruction's answer tokens first, then
    the instructions (``loss_average: instruction``).

    trl averages over all answer tokens of a batch, so a listwise answer (~100 tokens, mostly
    titles copied from the prompt) outweighs a pairwise "Yes"/"No" a hundredfold and the one-token
    decisions barely move. Evaluation keeps trl's token mean. Reuses trl's fused LM head (per-token
    log-probs and label mask), so it costs no extra forward.
    """
    from trl import SFTTrainer

    class InstructionMeanSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not model.training:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            out = model(**inputs, fused_lm_head=True)
            mask = out.label_mask
            per_answer = -out.log_probs.sum(-1) / mask.sum(-1).clamp(min=1)
            answered = mask.any(-1)
            loss = (per_answer * answered).sum() / answered.sum().clamp(min=1)
            if num_items_in_batch is not None:  # Trainer then leaves the accumulation average to the loss
                loss = loss / self.current_gradient_accumulation_steps
            return loss

    return InstructionMeanSFTTrainer


def train_sft(
    base_dir: str | Path,
    train_records: Sequence[dict],
    eval_records: Sequence[dict],
    out_dir: str | Path,
    cfg: TrainSettings,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Instruction-tune the model in ``base_dir``; write the adapter (or full model) + tokenizer + log.

    ``cfg``: an SFT section (:class:`~recranker.llm.config.SFTSettings`, DMPO's
    :class:`~recranker.dmpo.config.DMPOSFTSettings`) with its run context (``with_run``).
    ``out_dir`` receives the peft adapter (LoRA) or the full model (``method="full"``), the
    tokenizer and ``training_log.json``. Checkpoints go to ``cfg.checkpoint_dir`` and are removed
    after success; an interrupted run called again with the same settings resumes from there.
    Returns the summary (losses, steps, seconds, tokens).
    """
    from trl import SFTConfig, SFTTrainer

    from recranker.llm.model import load_model, load_tokenizer

    n_distinct = len(train_records)
    if cfg.group_by_length:
        from recranker.llm.distributed import world_size

        # every rank sees batch_size per micro-batch: the global batch counts the ranks
        n_examples = cfg.max_steps * cfg.batch_size * cfg.grad_accum * world_size()
        train_records = length_grouped(train_records, cfg.batch_size, n_examples, cfg.seed)
    train_ds = _dataset(train_records, "train")
    eval_ds = _dataset(eval_records, "eval") if eval_records else None
    tokenizer = load_tokenizer(str(base_dir))
    ckpt_dir = checkpoint_dir(cfg, "sft")
    # The training config first: under DeepSpeed ZeRO-3 it is what makes the load partitioned.
    args = SFTConfig(
        **common_args(cfg, ckpt_dir, has_eval=eval_ds is not None),
        completion_only_loss=True,
        packing=False,
        include_num_input_tokens_seen="non_padding",
    )
    model = load_model(str(base_dir), dtype=weights_dtype(lora=cfg.method == "lora", bf16=args.bf16))
    model.config.use_cache = False
    if cfg.method == "lora":
        check_target_modules(model, cfg.lora.target_modules)
    trainer_class = instruction_mean_trainer() if getattr(cfg, "loss_average", "token") == "instruction" else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora) if cfg.method == "lora" else None,
        callbacks=list(callbacks),
    )
    fingerprint = run_fingerprint(cfg, train_records, eval_records, models=[base_dir])
    result, seconds, resumed = run_trainer(trainer, ckpt_dir, fingerprint=fingerprint)
    eval_metrics = trainer.evaluate() if eval_ds is not None else {}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_trained(trainer, out, tokenizer)
    summary = summarize_log(trainer.state.log_history)
    report = {
        "method": cfg.method,
        "steps": int(trainer.state.global_step),
        "seconds": round(seconds, 3),
        "train_loss_mean": float(result.training_loss),
        "final_train_loss": summary["final_train_loss"],
        "eval_loss": float(eval_metrics["eval_loss"]) if "eval_loss" in eval_metrics else None,
        "tokens": int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0),
        "n_train": n_distinct,
        "n_eval": len(eval_ds) if eval_ds is not None else 0,
        "resumed_from": Path(resumed).name if resumed else None,
        "trainable_parameters": trainable_parameters(trainer.model),
        "bf16": bool(args.bf16),  # what `bf16: auto` chose on this machine
    }
    write_training_log(out, {**report, "settings": cfg.settings(), "curve": summary["curve"],
                     "eval_curve": summary["eval_curve"], "log_history": trainer.state.log_history})
    remove_checkpoints(ckpt_dir)
    return {**report, "curve": summary["curve"]}
