"""Supervised instruction tuning (RecRanker §3.3) with trl's SFTTrainer.

Instruction records (docs/CONTRACTS.md: ``messages`` = prompt turns, ``completion`` = the answer
string) become trl's conversational prompt/completion examples, so the chat template is applied by
trl and the loss covers the completion tokens only. LoRA (peft) or full fine-tuning; cosine
schedule with warm-up; checkpoints every ``save_steps`` in ``checkpoint_dir`` (outside the output
directory, which the caller replaces atomically) and automatic resume from the last one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recranker.errors import ParamError, RecrankerError
from recranker.llm.config import TrainSettings
from recranker.llm.training import (
    checkpoint_dir,
    common_args,
    lora_config,
    remove_checkpoints,
    run_fingerprint,
    run_trainer,
    save_trained,
    summarize_log,
    trainable_parameters,
    weights_dtype,
    write_training_log,
)


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


def _dataset(records: Iterable[dict], name: str):
    from datasets import Dataset

    rows = [to_prompt_completion(r, f"{name}[{i}] (id={r.get('id', '?')})") for i, r in enumerate(records)]
    if not rows:
        raise RecrankerError(f"{name}: no instruction records")
    return Dataset.from_list(rows)


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
    trainer_class = instruction_mean_trainer() if cfg.loss_average == "instruction" else SFTTrainer
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
