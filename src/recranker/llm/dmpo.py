"""DMPO: direct multi-negative preference optimisation on top of the SFT model.

Loss per sample (k negatives): ``−log σ(β·(Δ_chosen − mean_j Δ_rejected_j))`` with
``Δ = log π_θ(y|x) − log π_ref(y|x)`` (sum of the completion tokens' log-probabilities) and
``π_ref`` the SFT model. With k = 1 this is exactly DPO's sigmoid loss.

Built on trl's :class:`~trl.DPOTrainer` (pinned trl 1.16) rather than beside it, reusing:
- its tokenisation (``_prepare_dataset``: chat template, prompt/completion split, length filter),
  applied to the k (prompt, chosen, rejected_j) pairs of each sample, then regrouped;
- its fused LM head (per-token log-probs without materialising the logits);
- its reference handling: for a LoRA policy trl copies the trainable "default" adapter into a
  frozen "ref" adapter, so the reference is the SFT adapter, not the adapter-free base; for a
  full model we pass a frozen copy of the SFT weights as ``ref_model``;
- ``compute_ref_log_probs`` (no-grad reference forward) and its metric logging.
Only the collator (1 + k sequences per sample) and the loss are ours.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recranker.errors import RecrankerError
from recranker.llm.sft import (
    TrainSettings,
    common_args,
    lora_config,
    run_fingerprint,
    run_trainer,
    stable_adapter_config,
    summarize_log,
    write_training_log,
)


@dataclass(frozen=True)
class DMPOSettings(TrainSettings):
    beta: float = 0.1
    k: int = 3
    lr: float = 5e-5
    max_steps: int = 20
    batch_size: int = 2
    # "base": skip SFT — policy and reference start as the base model, with a fresh adapter when
    # ``lora`` is given (the DMPO paper's "without SFT" few-shot line).
    init: str = "sft"
    lora: Any = None  # LoraSettings for init="base"; None = full fine-tuning


def dmpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-sample DMPO loss and the implicit rewards.

    policy_chosen, ref_chosen: [B] sequence log-probs; policy_rejected, ref_rejected: [k, B].
    Returns (loss [B], chosen_rewards [B], rejected_rewards [k, B]) with reward = β·Δ.
    """
    import torch.nn.functional as F

    delta_chosen = policy_chosen - ref_chosen
    delta_rejected = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (delta_chosen - delta_rejected.mean(dim=0)))
    return loss, beta * delta_chosen.detach(), beta * delta_rejected.detach()


def to_preference(record: dict[str, Any], k: int, where: str = "record") -> dict[str, Any]:
    """``{prompt, chosen, rejected: [..], meta}`` → conversational example with exactly k negatives.

    ``prompt`` is a list of chat messages (or a plain string, taken as one user turn);
    ``chosen`` and each rejected answer are strings (the assistant's reply). The first k negatives
    are used, so the choice is deterministic.
    """
    prompt = record.get("prompt")
    if isinstance(prompt, str) and prompt:
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    ):
        raise RecrankerError(f"{where}: 'prompt' must be a string or a non-empty list of {{role, content}}")
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if not isinstance(chosen, str) or not chosen:
        raise RecrankerError(f"{where}: 'chosen' must be a non-empty string")
    if not isinstance(rejected, list) or not all(isinstance(r, str) and r for r in rejected):
        raise RecrankerError(f"{where}: 'rejected' must be a list of non-empty strings")
    if len(rejected) < k:
        raise RecrankerError(f"{where}: {len(rejected)} rejected answers, llm.dmpo.k needs {k}")
    msgs = [{"role": m["role"], "content": m["content"]} for m in prompt]

    def answer(text: str) -> list[dict]:
        return [{"role": "assistant", "content": text}]

    return {"prompt": msgs, "chosen": answer(chosen), "rejected": [answer(r) for r in rejected[:k]]}


def _trl():
    """Import trl lazily and build the two classes on top of it (trl import takes seconds)."""
    import torch
    from datasets import Dataset
    from transformers.data.data_collator import DataCollatorMixin
    from trl import DPOTrainer
    from trl.trainer.utils import pad

    @dataclass
    class MultiNegativeCollator(DataCollatorMixin):
        """Pads [chosen_1..chosen_B, rej_1,1..rej_1,B, ..., rej_k,1..rej_k,B] into one batch.

        Same layout as trl's DataCollatorForPreference when k = 1 (chosen block, then rejected).
        """

        pad_token_id: int
        max_length: int | None = None
        truncation_mode: str = "keep_start"
        return_tensors: str = "pt"

        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            k = len(examples[0]["rejected_ids"])
            seqs, masks = [], []
            for block in range(k + 1):
                for ex in examples:
                    comp = ex["chosen_ids"] if block == 0 else ex["rejected_ids"][block - 1]
                    seqs.append(ex["prompt_ids"] + comp)
                    masks.append([0] * len(ex["prompt_ids"]) + [1] * len(comp))
            if self.max_length is not None:
                sl = slice(None, self.max_length) if self.truncation_mode == "keep_start" else slice(-self.max_length, None)
                seqs, masks = [s[sl] for s in seqs], [m[sl] for m in masks]
            return {
                "input_ids": pad([torch.tensor(s) for s in seqs], padding_value=self.pad_token_id),
                "attention_mask": pad([torch.ones(len(s), dtype=torch.long) for s in seqs], padding_value=0),
                "completion_mask": pad([torch.tensor(m, dtype=torch.long) for m in masks], padding_value=0),
            }

    class DMPOTrainer(DPOTrainer):
        """DPOTrainer with k rejected answers per prompt and the DMPO loss."""

        def __init__(self, *args, k: int, **kwargs):
            self.k = k
            super().__init__(*args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # Tokenise each (prompt, chosen, rejected_j) pair with trl's own code, then regroup.
            flat = [
                {"prompt": ex["prompt"], "chosen": ex["chosen"], "rejected": rej, "sample": i}
                for i, ex in enumerate(dataset)
                for rej in ex["rejected"]
            ]
            pairs = super()._prepare_dataset(Dataset.from_list(flat), processing_class, args, dataset_name)
            groups: dict[int, dict[str, Any]] = {}
            for row in pairs:
                g = groups.setdefault(row["sample"], {"prompt_ids": row["prompt_ids"], "chosen_ids": None,
                                                      "rejected_ids": []})
                p = g["prompt_ids"]
                if row["prompt_ids"] != p:  # the template split prompt/answer differently for this answer
                    n = min(len(p), len(row["prompt_ids"]))
                    raise RecrankerError(
                        f"{dataset_name}[{row['sample']}]: prompt tokenises differently across answers "
                        f"(first {n} tokens shared); end the prompt on a token boundary"
                    )
                g["chosen_ids"] = row["chosen_ids"]
                g["rejected_ids"].append(row["rejected_ids"])
            rows = [g for g in groups.values() if len(g["rejected_ids"]) == self.k]
            if not rows:
                raise RecrankerError(f"{dataset_name}: no preference sample fits llm.dmpo.max_length")
            return Dataset.from_list(rows)

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            completion_mask = inputs["completion_mask"]
            labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
            outputs = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                labels=labels,
                use_cache=False,
                fused_lm_head=True,
            )
            seq_len = completion_mask.size(1) - 1
            logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
            ref_model = self.ref_model if self.ref_model is not None else self.model
            ref_logps = torch.cat(self.compute_ref_log_probs(ref_model, inputs))  # trl returns 2 chunks
            b = logps.size(0) // (self.k + 1)
            loss, r_chosen, r_rejected = dmpo_loss(
                logps[:b], logps[b:].view(self.k, b), ref_logps[:b], ref_logps[b:].view(self.k, b), self.beta
            )
            gather = self.accelerator.gather_for_metrics
            m = self._metrics[mode]
            m["rewards/chosen"].append(gather(r_chosen).mean().item())
            m["rewards/rejected"].append(gather(r_rejected.mean(dim=0)).mean().item())
            m["rewards/margins"].append(gather(r_chosen - r_rejected.mean(dim=0)).mean().item())
            m["rewards/accuracies"].append(gather((r_chosen > r_rejected.max(dim=0).values).float()).mean().item())
            m["logps/chosen"].append(gather(logps[:b].detach()).mean().item())
            m["logps/rejected"].append(gather(logps[b:].detach()).mean().item())
            if mode == "train":  # same bookkeeping as trl's DPO loss: tokens processed (policy forward)
                self._total_train_tokens += int(gather(inputs["attention_mask"].sum()).sum().item())
            m["num_tokens"] = [self._total_train_tokens]
            loss = loss.mean()
            return (loss, outputs) if return_outputs else loss

    return DMPOTrainer, MultiNegativeCollator


def build_trainer(
    sft_dir: str | Path,
    base_dir: str | Path,
    train_examples: list[dict],
    cfg: DMPOSettings,
    output_dir: str | Path,
    eval_examples: list[dict] | None = None,
    callbacks: Sequence[Any] = (),
):
    """A ready DMPO trainer whose policy and reference both start as the SFT (or base) model."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig

    from recranker.llm.model import is_adapter_dir, load_model, load_tokenizer, load_tuned

    DMPOTrainer, Collator = _trl()
    if cfg.init not in ("sft", "base"):
        raise RecrankerError(f"dmpo: init must be 'sft' or 'base' (got {cfg.init!r})")
    start = sft_dir if cfg.init == "sft" else base_dir
    tokenizer = load_tokenizer(str(start))
    ref_model, peft_config = None, None
    if is_adapter_dir(start):
        policy = load_tuned(start, base_dir, merge=False, dtype=torch.float32)  # trainable "default" adapter
    else:
        policy = load_model(str(start), dtype=torch.float32)
        if cfg.init == "base" and cfg.lora is not None:
            peft_config = lora_config(cfg.lora)  # trl adds the adapter; reference = adapter disabled
        else:
            ref_model = load_model(str(start), dtype=torch.float32)
            ref_model.requires_grad_(False)
    policy.config.use_cache = False
    args = DPOConfig(
        **common_args(cfg, output_dir, has_eval=bool(eval_examples)),
        beta=cfg.beta,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=False,
        disable_dropout=True,
        remove_unused_columns=False,
    )
    collator = Collator(pad_token_id=tokenizer.pad_token_id, max_length=cfg.max_length,
                        truncation_mode=args.truncation_mode)
    return DMPOTrainer(
        model=policy,
        ref_model=ref_model,
        args=args,
        data_collator=collator,
        train_dataset=Dataset.from_list(train_examples),
        eval_dataset=Dataset.from_list(eval_examples) if eval_examples else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config,
        k=cfg.k,
    )


def train_dmpo(
    sft_dir: str | Path,
    base_dir: str | Path,
    records: Sequence[dict],
    out_dir: str | Path,
    cfg: DMPOSettings,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Run DMPO from the SFT model on preference records; write the adapter/model + log to ``out_dir``."""
    examples = [to_preference(r, cfg.k, f"preferences[{i}]") for i, r in enumerate(records)]
    if not examples:
        raise RecrankerError("dmpo: no preference records")
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else Path(tempfile.mkdtemp(prefix="recranker-dmpo-"))
    trainer = build_trainer(sft_dir, base_dir, examples, cfg, ckpt_dir, callbacks=callbacks)
    start = [sft_dir] if cfg.init == "sft" else []
    fingerprint = run_fingerprint(cfg, examples, models=[*start, base_dir])
    result, seconds, resumed = run_trainer(trainer, ckpt_dir, fingerprint=fingerprint)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "peft_config"):
        model.save_pretrained(out, selected_adapters=["default"])  # not the frozen "ref" copy
        stable_adapter_config(out)
    else:
        model.save_pretrained(out, safe_serialization=True)
    trainer.processing_class.save_pretrained(out)
    summary = summarize_log(trainer.state.log_history)
    last = next((h for h in reversed(trainer.state.log_history) if "rewards/margins" in h), {})
    report = {
        "k": cfg.k,
        "beta": cfg.beta,
        "steps": int(trainer.state.global_step),
        "seconds": round(seconds, 3),
        "train_loss_mean": float(result.training_loss),
        "first_train_loss": summary["curve"][0]["loss"] if summary["curve"] else None,
        "final_train_loss": summary["final_train_loss"],
        "final_reward_margin": last.get("rewards/margins"),
        "final_reward_accuracy": last.get("rewards/accuracies"),
        "n_train": len(trainer.train_dataset),
        "tokens": int(last.get("num_tokens") or 0),
        "resumed_from": Path(resumed).name if resumed else None,
    }
    write_training_log(out, {**report, "settings": asdict(cfg), "curve": summary["curve"],
                     "log_history": trainer.state.log_history})
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return {**report, "curve": summary["curve"]}
