"""DMPO: direct multi-negative preference optimisation on top of the DMPO-SFT model.

A sample is k pairwise prompts x_i (same history and positive, negative i), each with chosen
"<pos, neg_i>" and rejected "<neg_i, pos>". Loss per sample (Equation 3):
``−log σ(β·(mean_i Δ(chosen_i|x_i) − mean_i Δ(rejected_i|x_i)))`` with
``Δ = log π_θ(y|x) − log π_ref(y|x)`` (sum of the answer tokens' log-probabilities) and ``π_ref``
the starting model. With k = 1 this is exactly DPO's sigmoid loss.

Built on trl's :class:`~trl.DPOTrainer` (pinned trl 1.16) rather than beside it, reusing:
- its tokenisation (``_prepare_dataset``: chat template, prompt/completion split, length filter),
  applied to the k (prompt, chosen, rejected_j) pairs of each sample, then regrouped;
- its reference handling: for a LoRA policy trl copies the trainable "default" adapter into a
  frozen "ref" adapter, so the reference is the SFT adapter, not the adapter-free base; for a
  full model we pass a frozen copy of the SFT weights as ``ref_model``;
- ``precompute_ref_log_probs``: the reference log-probs are computed once before training and
  stored with the dataset (so the reference never runs again, and no reference copy is held);
- ``compute_ref_log_probs`` (no-grad reference forward) and its metric logging.
Ours: the regrouping, the loss, and the forward — each sample's shared prompt prefix (system turn
and history) is encoded once and its 2k answers run on its cache (:mod:`recranker.dmpo.shared_prefix`),
~3x fewer tokens than 2k full sequences at k = 3.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recranker.dmpo.config import DMPOSettings
from recranker.errors import RecrankerError
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


def dmpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-sample DMPO loss (Equation 3) and the implicit rewards.

    All inputs are [k, B] sequence log-probs: pair i of sample b is (x_i, chosen_i, rejected_i).
    ``loss = −log σ(β·(mean_i Δchosen_i − mean_i Δrejected_i))`` with ``Δ = log π_θ − log π_ref``;
    for k = 1 this is DPO's sigmoid loss. Returns (loss [B], chosen_rewards [k, B],
    rejected_rewards [k, B]) with reward = β·Δ.
    """
    import torch.nn.functional as F

    delta_chosen = policy_chosen - ref_chosen
    delta_rejected = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (delta_chosen.mean(dim=0) - delta_rejected.mean(dim=0)))
    return loss, beta * delta_chosen.detach(), beta * delta_rejected.detach()


def _messages(prompt: Any, where: str) -> list[dict]:
    if isinstance(prompt, str) and prompt:
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    ):
        raise RecrankerError(f"{where}: 'prompt' must be a string or a non-empty list of {{role, content}}")
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def pairs_of(record: dict[str, Any], k: int, where: str = "record") -> list[dict[str, Any]]:
    """The first k (prompt messages, chosen, rejected) pairs of a preference record, validated."""
    pairs = record.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise RecrankerError(f"{where}: 'pairs' must be a non-empty list of {{prompt, chosen, rejected}}")
    if len(pairs) < k:
        raise RecrankerError(f"{where}: {len(pairs)} pairs (negatives), llm.dmpo.k needs {k}")
    out = []
    for i, p in enumerate(pairs[:k]):
        w = f"{where} pair {i}"
        if not isinstance(p, dict):
            raise RecrankerError(f"{w}: expected an object")
        for key in ("chosen", "rejected"):
            if not isinstance(p.get(key), str) or not p[key]:
                raise RecrankerError(f"{w}: '{key}' must be a non-empty string")
        out.append({"prompt": _messages(p.get("prompt"), w), "chosen": p["chosen"], "rejected": p["rejected"]})
    return out


def to_preference(record: dict[str, Any], k: int, where: str = "record") -> dict[str, Any]:
    """A preference record → k conversational DPO pairs ``{prompt, chosen, rejected}`` (trl's format)."""

    def answer(text: str) -> list[dict]:
        return [{"role": "assistant", "content": text}]

    return {"pairs": [{"prompt": p["prompt"], "chosen": answer(p["chosen"]), "rejected": answer(p["rejected"])}
                      for p in pairs_of(record, k, where)]}


def _trl():
    """Import trl lazily and build the two classes on top of it (trl import takes seconds)."""
    import contextlib

    import torch
    from accelerate.utils import is_peft_model
    from datasets import Dataset
    from transformers.data.data_collator import DataCollatorMixin
    from trl import DPOTrainer
    from trl.trainer.utils import use_adapter

    from recranker.dmpo.shared_prefix import batch_logps, collate_sample

    @dataclass
    class MultiNegativeCollator(DataCollatorMixin):
        """Per sample: its shared prompt prefix and its 2k suffixes (chosen_1..k, rejected_1..k).

        Never truncates: the trainer refuses over-long samples when it tokenises them.
        """

        pad_token_id: int
        return_tensors: str = "pt"

        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {"samples": [
                collate_sample(ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"], self.pad_token_id)
                for ex in examples
            ]}
            if "ref_chosen_logps" in examples[0]:  # precomputed: [B, k] each
                for key in ("ref_chosen_logps", "ref_rejected_logps"):
                    out[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float32)
            return out

    class DMPOTrainer(DPOTrainer):
        """DPOTrainer whose samples are k pairwise prompts, with the DMPO loss."""

        def __init__(self, *args, k: int, ids: Sequence[str] = (), **kwargs):
            self.k = k
            self._ids = list(ids)
            super().__init__(*args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            # Tokenise every (x_i, chosen_i, rejected_i) pair with trl's own code, then regroup per sample.
            flat = [
                {"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"], "sample": i}
                for i, ex in enumerate(dataset)
                for p in ex["pairs"]
            ]
            # trl would drop a pair whose prompt alone fills max_length: tokenise without a limit and
            # refuse below instead, naming the longest sample.
            unlimited = copy.copy(args)
            unlimited.max_length = None
            pairs = super()._prepare_dataset(Dataset.from_list(flat), processing_class, unlimited, dataset_name)
            groups: dict[int, dict[str, list]] = {}
            longest = (0, -1)
            for row in pairs:
                g = groups.setdefault(row["sample"], {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []})
                for key in g:
                    g[key].append(row[key])
                n = len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"]))
                longest = max(longest, (n, row["sample"]))
            n_samples = len(dataset)
            limit = args.max_length
            if limit is not None and longest[0] > limit:
                which = longest[1]
                name = self._ids[which] if which < len(self._ids) else f"{dataset_name}[{which}]"
                raise RecrankerError(
                    f"llm.dmpo.max_length={limit} would cut {name} (longest sample {longest[0]} tokens); "
                    f"raise llm.dmpo.max_length to at least {longest[0]}"
                )
            return _on_shared_disk(Dataset.from_list([groups[i] for i in range(n_samples)]),
                                   Path(args.output_dir) / ".prepared" / dataset_name)

        def compute_ref_log_probs(self, model, inputs):
            # trl's reference context (the frozen "ref" adapter, or adapters disabled), our shared-prefix forward.
            adapter = contextlib.nullcontext()
            if self.ref_model is None and is_peft_model(self.model):
                unwrapped = self.accelerator.unwrap_model(self.model)
                adapter = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
            with torch.no_grad(), adapter, self.accelerator.autocast():
                logps = batch_logps(model, inputs["samples"])
            return logps[: self.k].T, logps[self.k :].T  # [B, k] each

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            logps = batch_logps(model, inputs["samples"])  # [2k, B]
            if "ref_chosen_logps" in inputs:  # precomputed once before training
                ref_c, ref_r = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_model = self.ref_model if self.ref_model is not None else self.model
                ref_c, ref_r = self.compute_ref_log_probs(ref_model, inputs)
            pol_c, pol_r = logps[: self.k], logps[self.k :]
            loss, r_chosen, r_rejected = dmpo_loss(pol_c, pol_r, ref_c.T.to(logps), ref_r.T.to(logps), self.beta)
            gather = self.accelerator.gather_for_metrics
            m = self._metrics[mode]
            m["rewards/chosen"].append(gather(r_chosen.mean(dim=0)).mean().item())
            m["rewards/rejected"].append(gather(r_rejected.mean(dim=0)).mean().item())
            m["rewards/margins"].append(gather(r_chosen.mean(dim=0) - r_rejected.mean(dim=0)).mean().item())
            m["rewards/accuracies"].append(gather((r_chosen > r_rejected).float().mean(dim=0)).mean().item())
            m["logps/chosen"].append(gather(pol_c.detach()).mean().item())
            m["logps/rejected"].append(gather(pol_r.detach()).mean().item())
            if mode == "train":  # tokens the policy forward processed (each prefix once)
                n = sum(s["prefix_ids"].numel() + int(s["suffix_mask"].sum()) for s in inputs["samples"])
                self._total_train_tokens += int(gather(torch.tensor(n)).sum().item())
            m["num_tokens"] = [self._total_train_tokens]
            loss = loss.mean()
            return (loss, {"logps": logps}) if return_outputs else loss

    return DMPOTrainer, MultiNegativeCollator


def _on_shared_disk(dataset, where: Path):
    """``dataset`` saved by rank 0 under ``where`` and loaded from there by every rank.

    trl caches the precomputed reference log-probs next to the dataset's own Arrow files; an
    in-memory dataset has none, so each rank would pick its own random temporary path and the
    others would not find rank 0's cache. A dataset on a path all ranks share has one cache file.
    """

    from datasets import load_from_disk

    from recranker.llm.distributed import barrier, is_main

    if is_main():
        shutil.rmtree(where, ignore_errors=True)
        dataset.save_to_disk(str(where))
    barrier()
    return load_from_disk(str(where))


def build_trainer(
    sft_dir: str | Path,
    base_dir: str | Path,
    train_examples: list[dict],
    cfg: DMPOSettings,
    output_dir: str | Path,
    eval_examples: list[dict] | None = None,
    callbacks: Sequence[Any] = (),
    ids: Sequence[str] = (),
):
    """A ready DMPO trainer whose policy and reference both start as the SFT (or base) model."""
    from datasets import Dataset
    from trl import DPOConfig

    from recranker.llm.model import is_adapter_dir, load_model, load_tokenizer, load_tuned

    DMPOTrainer, Collator = _trl()
    if cfg.init not in ("sft", "base"):
        raise RecrankerError(f"dmpo: init must be 'sft' or 'base' (got {cfg.init!r})")
    start = sft_dir if cfg.init == "sft" else base_dir
    tokenizer = load_tokenizer(str(start))
    peft_config = None
    # The training config first: under DeepSpeed ZeRO-3 it is what makes the load partitioned.
    args = DPOConfig(
        # No gradient checkpointing: the shared-prefix forward keeps the prompt's cache in the graph.
        **{**common_args(cfg, output_dir, has_eval=bool(eval_examples)), "gradient_checkpointing": False},
        beta=cfg.beta,
        loss_type=["sigmoid"],
        precompute_ref_log_probs=cfg.precompute_ref,
        precompute_ref_batch_size=cfg.batch_size,
        disable_dropout=True,
        remove_unused_columns=False,
    )
    # precompute_ref_log_probs: the reference runs once, before training, on the starting weights;
    # no frozen copy is kept (trl uses the policy itself, or its "ref"/disabled adapter).
    lora = is_adapter_dir(start) or (cfg.init == "base" and cfg.lora is not None)
    dtype = weights_dtype(lora=lora, bf16=args.bf16)
    if is_adapter_dir(start):
        policy = load_tuned(start, base_dir, merge=False, dtype=dtype)  # trainable "default" adapter
    else:
        policy = load_model(str(start), dtype=dtype)
        if cfg.init == "base" and cfg.lora is not None:
            peft_config = lora_config(cfg.lora)  # trl adds the adapter; reference = adapter disabled
    policy.config.use_cache = False
    return DMPOTrainer(
        model=policy,
        ref_model=None if cfg.precompute_ref or peft_config or is_adapter_dir(start) else _frozen(start),
        args=args,
        data_collator=Collator(pad_token_id=tokenizer.pad_token_id),
        train_dataset=Dataset.from_list(train_examples),
        eval_dataset=Dataset.from_list(eval_examples) if eval_examples else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config,
        k=cfg.k,
        ids=ids,
    )


def _frozen(start):
    import torch

    from recranker.llm.model import load_model

    ref = load_model(str(start), dtype=torch.float32)
    ref.requires_grad_(False)
    return ref


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
    ckpt_dir = checkpoint_dir(cfg, "dmpo")
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    trainer = build_trainer(sft_dir, base_dir, examples, cfg, ckpt_dir, callbacks=callbacks, ids=ids)
    start = [sft_dir] if cfg.init == "sft" else []
    fingerprint = run_fingerprint(cfg, examples, models=[*start, base_dir])
    result, seconds, resumed = run_trainer(trainer, ckpt_dir, fingerprint=fingerprint)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # trainer.save_model (gathered under ZeRO-3), without trl's frozen "ref" copy of the adapter
    save_trained(trainer, out, trainer.processing_class, drop_adapters=["ref"])
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
        "trainable_parameters": trainable_parameters(trainer.model),
        "bf16": bool(trainer.args.bf16),  # what `bf16: auto` chose on this machine
    }
    write_training_log(out, {**report, "settings": cfg.settings(), "curve": summary["curve"],
                     "log_history": trainer.state.log_history})
    remove_checkpoints(ckpt_dir)
    return {**report, "curve": summary["curve"]}
