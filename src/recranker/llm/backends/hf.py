"""The `hf` backend: transformers on CPU or GPU, answers read by :mod:`recranker.llm.scoring`.

The adapter (LoRA) is merged into the base weights at load time (``recranker.llm.model.load_tuned``):
inference then runs plain Linear layers, faster than peft's extra low-rank matmuls and the same
model. A full fine-tune output directory is loaded as the model itself.

Devices: the model is loaded and merged in fp32 on the host, cast (body in ``dtype``, final norm
and output layer kept fp32: :func:`half_body_fp32_head`), then moved to its device — the CPU, or
a GPU, where every input tensor is built. With several GPUs the scoring runs in one worker
process per GPU (:class:`~recranker.llm.scoring.ShardedScorer`, ``devices``); generation runs in
this process on the first GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Backend, Prompt, Sampling
from recranker.llm.scoring import (
    PrefixCachedScorer,
    ScoreRequest,
    ShardedScorer,
    chat_prompt_ids,
    complete_answers,
    end_of_turn_id,
    single_token_labels,
)

DTYPES = ("float32", "bfloat16", "float16")


def load_hf(base_dir: str | Path, adapter_dir: str | Path | None = None, dtype: str = "float32",
            device: str | None = None):
    """(model, tokenizer) from a saved base model directory plus an optional tuned directory
    (peft adapter, merged in fp32 before casting, or a full fine-tuned model), on ``device``
    (None: this process's device, :func:`recranker.llm.precision.default_device` — its GPU if
    it has one)."""
    import torch

    from recranker.llm.model import load_model, load_tokenizer, load_tuned
    from recranker.llm.precision import default_device

    if dtype not in DTYPES:
        raise RecrankerError(f"rank.dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    for d in (base_dir, adapter_dir):
        if d is not None and not Path(d).is_dir():
            raise RecrankerError(f"{d}: model directory not found")
    tokenizer = load_tokenizer(str(base_dir))
    if adapter_dir is None:
        model = load_model(str(base_dir), dtype=torch.float32)
    else:
        model = load_tuned(adapter_dir, base_dir, merge=True, dtype=torch.float32)
    if dtype != "float32":
        model = half_body_fp32_head(model, getattr(torch, dtype))
    device = device or default_device()
    if device != "cpu":
        model = model.to(device)
    return model.eval(), tokenizer


def _load_model_only(base_dir, adapter_dir, dtype: str, device: str = "cpu"):
    return load_hf(base_dir, adapter_dir, dtype, device)[0]


def half_body_fp32_head(model, dtype):
    """Cast the transformer body to ``dtype`` (bf16: ~2x faster matmuls on CPUs with bf16
    units) but keep the final norm and the output projection in fp32: bf16 logits are
    rounded to ~0.1 at typical magnitudes, which alone moves restricted-softmax scores
    (measured in benchmarks/rank_throughput.py). The head only runs on the kept positions."""
    import torch

    head32 = model.get_output_embeddings()
    w32 = head32.weight.detach().clone()
    bias32 = None if head32.bias is None else head32.bias.detach().clone()
    model = model.to(dtype)
    head = torch.nn.Linear(w32.shape[1], w32.shape[0], bias=bias32 is not None, dtype=torch.float32)
    head.weight = torch.nn.Parameter(w32, requires_grad=False)
    if bias32 is not None:
        head.bias = torch.nn.Parameter(bias32, requires_grad=False)
    head.register_forward_pre_hook(lambda mod, args: (args[0].float(), *args[1:]))
    model.set_output_embeddings(head)
    norm = getattr(getattr(model, "model", None), "norm", None)
    if norm is not None:
        norm.float()
    return model


class HFBackend(Backend):
    """Scores prompts with a local transformers model (see :class:`PrefixCachedScorer`)."""

    name = "hf"

    def __init__(
        self,
        model,
        tokenizer,
        *,
        batch_size: int = 16,
        min_prefix: int = 16,
        use_prefix_cache: bool = True,
        progress: bool = False,
        workers: int = 1,
        load_spec: tuple | None = None,
        threads: int = 1,
        devices: Sequence[str] | None = None,
    ):
        """``workers`` > 1 scores in that many processes (:class:`ShardedScorer`) with ``threads``
        torch threads each, worker i on ``devices[i]`` (default: all on the CPU); they rebuild the
        model from ``load_spec`` = (base_dir, adapter_dir, dtype), so only :meth:`from_dirs` can
        ask for them. Generation stays in this process. ``model`` may be None with workers: it is
        then loaded on ``devices[0]`` when first needed (a generation), so that a GPU does not hold
        a copy that only scoring workers use."""
        self._model = model
        self._load_spec = load_spec
        self._generation_device = (list(devices) if devices else ["cpu"])[0]
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad or 0)  # generation pads with it, whichever scorer runs
        kwargs = {"pad_token_id": self.pad_token_id, "batch_size": batch_size, "min_prefix": min_prefix,
                  "use_prefix_cache": use_prefix_cache, "progress": progress}
        if workers > 1:
            if load_spec is None:
                raise RecrankerError("hf backend: worker processes need the model directories (from_dirs)")
            self.scorer = ShardedScorer(partial(_load_model_only, *load_spec), workers=workers,
                                        threads=threads, devices=devices, **kwargs)
        else:
            if model is None:
                raise RecrankerError("hf backend: a single in-process scorer needs the model")
            self.scorer = PrefixCachedScorer(model, **kwargs)
        self._encoded: dict[Prompt, tuple[int, ...]] = {}

    @property
    def model(self):
        """The model of this process (generation; scoring too with one worker)."""
        if self._model is None:
            self._model = _load_model_only(*self._load_spec, self._generation_device)
        return self._model

    @classmethod
    def from_dirs(cls, base_dir, adapter_dir=None, dtype: str = "float32", *,
                  devices: Sequence[str] | None = None, workers: int = 1, **kwargs) -> HFBackend:
        """The backend over saved directories. ``devices``: one per worker (default: the CPU for
        every worker, or this process's device with one worker). Scoring workers on GPUs load
        their own copies, so this process loads its model only when it generates."""
        spec = (str(base_dir), None if adapter_dir is None else str(adapter_dir), dtype)
        lazy = workers > 1 and devices is not None and any(d != "cpu" for d in devices)
        if lazy:
            from recranker.llm.model import load_tokenizer

            for d in (base_dir, adapter_dir):
                if d is not None and not Path(d).is_dir():
                    raise RecrankerError(f"{d}: model directory not found")
            model, tok = None, load_tokenizer(str(base_dir))
        else:
            device = devices[0] if devices else ("cpu" if workers > 1 else None)
            model, tok = load_hf(base_dir, adapter_dir, dtype, device)
        return cls(model, tok, load_spec=spec, workers=workers, devices=devices, **kwargs)

    def close(self) -> None:
        if isinstance(self.scorer, ShardedScorer):
            self.scorer.close()

    def encode(self, prompt: Prompt) -> tuple[int, ...]:
        return self.encode_many([prompt])[0]

    def encode_many(self, prompts: Sequence[Prompt]) -> list[tuple[int, ...]]:
        """Chat-template token ids of each prompt (:func:`~recranker.llm.scoring.chat_prompt_ids`),
        cached per prompt."""
        known = {p: self._encoded[p] for p in dict.fromkeys(prompts) if p in self._encoded}
        todo = [p for p in dict.fromkeys(prompts) if p not in known]
        if todo:
            ids = chat_prompt_ids(self.tokenizer, [p.as_dicts() for p in todo])
            new = {p: tuple(t) for p, t in zip(todo, ids)}
            known.update(new)
            if len(self._encoded) + len(new) > 50_000:
                self._encoded.clear()
            self._encoded.update(new)
        return [known[p] for p in prompts]

    def end_token_id(self) -> int:
        """The token that closes an assistant turn (eos for ChatML-style templates)."""
        return end_of_turn_id(self.tokenizer)

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Sequence[str]) -> np.ndarray:
        rows = self.label_logprobs_multi(prompts, [labels] * len(prompts))
        return np.stack(rows) if rows else np.zeros((0, len(labels)))

    def label_logprobs_multi(self, prompts, label_sets) -> list[np.ndarray]:
        """One scorer call for all single-token label sets (the prefix of a user is encoded
        once for all tasks); multi-token label sets are scored as complete answers (label +
        end of turn) through :meth:`continuation_logprobs`."""
        if len(prompts) != len(label_sets):
            raise RecrankerError(f"{len(prompts)} prompts but {len(label_sets)} label sets")
        ids = single_token_labels(self.tokenizer, label_sets)
        encoded = self.encode_many(prompts)
        out: list[np.ndarray] = [np.zeros(0)] * len(prompts)
        fast = [i for i, labels in enumerate(label_sets) if ids[tuple(labels)] is not None]
        reqs = [ScoreRequest(encoded[i], tuple(ids[tuple(label_sets[i])]), 0, prompts[i].group)
                for i in fast]
        for i, r in zip(fast, self.scorer.score(reqs)):
            out[i] = r.targets
        slow = [i for i, labels in enumerate(label_sets) if ids[tuple(labels)] is None]
        if slow:
            conts = [complete_answers(self.tokenizer, label_sets[i]) for i in slow]
            for i, row in zip(slow, self.continuation_logprobs([prompts[i] for i in slow], conts)):
                out[i] = row
        return out

    def continuation_logprobs(self, prompts, continuations) -> list[np.ndarray]:
        if len(prompts) != len(continuations):
            raise RecrankerError(f"{len(prompts)} prompts but {len(continuations)} continuation lists")
        reqs, owner = [], []
        encoded = self.encode_many(prompts)
        for i, (p, conts) in enumerate(zip(prompts, continuations)):
            base = list(encoded[i])
            group = p.group if p.group is not None else ("prompt", i)
            for c in conts:
                ctoks = self.tokenizer.encode(c, add_special_tokens=False)
                if not ctoks:
                    raise RecrankerError(f"empty continuation {c!r} for prompt {i}")
                reqs.append(ScoreRequest(tuple(base + ctoks), (), len(ctoks), group))
                owner.append(i)
        res = self.scorer.score(reqs)
        out = [np.zeros(len(c)) for c in continuations]
        fill = [0] * len(prompts)
        for i, r in zip(owner, res):
            out[i][fill[i]] = r.continuation
            fill[i] += 1
        return out

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        return self.generate_ids([list(t) for t in self.encode_many(prompts)], sampling)

    def generate_ids(self, encoded: Sequence[Sequence[int]], sampling: Sampling) -> list[str]:
        """Answer text for each token-id prompt (left-padded batches sorted by length)."""
        import torch

        from recranker.llm.scoring.prefix_cached import model_device

        model = self.model
        device = model_device(model)
        pad = self.pad_token_id
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[str] = [""] * len(encoded)
        do_sample = sampling.temperature > 0
        gen_kwargs = {"max_new_tokens": sampling.max_new_tokens, "do_sample": do_sample, "pad_token_id": pad}
        if do_sample:
            gen_kwargs.update(temperature=sampling.temperature, top_k=sampling.top_k or None,
                              top_p=sampling.top_p)
        else:
            gen_kwargs.update(temperature=None, top_k=None, top_p=None)
        with torch.inference_mode(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(sampling.seed)
            for s in range(0, len(order), self.batch_size):
                chunk = order[s : s + self.batch_size]
                width = max(len(encoded[i]) for i in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    ids[row, width - len(encoded[i]) :] = torch.tensor(list(encoded[i]))
                    mask[row, width - len(encoded[i]) :] = 1
                gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     **gen_kwargs).cpu()
                for row, i in enumerate(chunk):
                    out[i] = self.tokenizer.decode(gen[row, width:], skip_special_tokens=True)
        return out
