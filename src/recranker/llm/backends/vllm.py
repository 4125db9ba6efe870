"""The `vllm` backend (GPU only; the `gpu` extra pins vllm 0.32.0). NEVER RUN in this project's
development machines or CI (no GPU, and vLLM does not install without CUDA).

What runs here (tests/test_backends_vllm.py) is the translation layer, as pure functions: our
params → ``vllm.LLM`` engine arguments (refusing a ``max_lora_rank`` vLLM refuses, or smaller than
the adapter's rank), the requests sent for each kind of answer and the reading of vLLM's
log-probs back. The engine calls follow vLLM 0.32.0's offline API as read in its source
(``LLM.generate`` with token-id prompts, per-request ``SamplingParams`` and a ``LoRARequest``); the
HF-vs-vLLM parity test (tests/test_backends_vllm.py) runs wherever vLLM imports.

Labels have the HF backend's definition (:mod:`recranker.llm.backends.hf`), in as few requests as
vLLM allows:

* **single-token label sets** (ratings "1".."5", "Yes"/"No", letters): ONE request per prompt, a
  one-token generation whose ``logprob_token_ids`` are the labels' tokens: vLLM returns their raw
  log-probabilities (full-vocabulary log-softmax of the next token, before sampling) — the next-token
  log-prob the HF scorer reads. No ``prompt_logprobs``, so the prefix cache is read: a user's shared
  prompt prefix is computed once, as in the HF scorer;
* **multi-token labels**: each label is scored as the complete answer "label + end-of-turn token"
  (:func:`recranker.llm.scoring.complete_answers`, as in HF) from ``prompt_logprobs`` of prompt +
  answer: one request per label. vLLM 0.32 does not read the prefix cache for a request with
  ``prompt_logprobs`` (``SamplingParams.skip_reading_prefix_cache``: cached rows would have no
  log-probs), so each such request recomputes its prompt — the cost of this path;
* **continuations** (``continuation_logprobs``, e.g. titles): as multi-token labels, without the
  end-of-turn token (as in HF).

Precision: in bf16 the transformer body runs in bf16 in both backends; the output layer runs with
fp32 logits (``hf_overrides={"head_dtype": "float32"}``, vLLM's switch for training-inference
consistency) where HF keeps the fp32 final norm and fp32 output weights
(:func:`~recranker.llm.backends.hf.half_body_fp32_head`). vLLM's final norm and its output weights
stay bf16, and its attention kernels differ, so the backends agree to a tolerance, not bit for bit
(stated and tested in tests/test_backends_vllm.py: 2e-3 nats in float32, 0.15 nats in bfloat16 —
the bf16 bound is an estimate, not yet measured on a GPU). Generation uses the paper's sampling
settings (temperature 0.1, top-k 10, top-p 0.1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Backend, Prompt, Sampling

# vllm 0.32.0, vllm/config/lora.py: ``MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]``.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vllm 0.32.0 ModelConfig.max_logprobs (default 20): the most log-probs one request may return per
# position, which caps a label set scored in one request.
VLLM_MAX_LOGPROBS = 20


def adapter_rank(tuned_dir: str | Path) -> int:
    """The largest LoRA rank in a peft adapter directory (``r`` and any per-module ``rank_pattern``)."""
    path = Path(tuned_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecrankerError(f"{path}: cannot read the adapter's config ({type(exc).__name__})") from None
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    ranks = [int(r) for r in ranks if r is not None]
    if not ranks:
        raise RecrankerError(f"{path}: no LoRA rank (r) in the adapter's config")
    return max(ranks)


def engine_kwargs(
    base_dir: str | Path,
    tuned_dir: str | Path | None,
    *,
    dtype: str = "bfloat16",
    gpu_memory_utilization: float = 0.9,
    max_lora_rank: int = 64,
    max_model_len: int = 2048,
    enable_prefix_caching: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """``vllm.LLM(**kwargs)``: the base model plus LoRA support, or a full fine-tuned model."""
    if max_lora_rank not in VLLM_LORA_RANKS:
        raise RecrankerError(f"rank.vllm.max_lora_rank: {max_lora_rank} is not one vLLM serves "
                             f"({', '.join(map(str, VLLM_LORA_RANKS))})")
    model = str(base_dir)
    lora = tuned_dir is not None and (Path(tuned_dir) / "adapter_config.json").is_file()
    if tuned_dir is not None and not lora:
        model = str(tuned_dir)  # full fine-tune: the tuned directory is the model
    kw: dict[str, Any] = {
        "model": model,
        "tokenizer": str(base_dir),
        "dtype": dtype,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": max_model_len,
        "enable_prefix_caching": enable_prefix_caching,
        "seed": seed,
        "trust_remote_code": False,
    }
    if dtype != "float32":  # fp32 logits, as the hf backend's fp32 output layer (module doc)
        kw["hf_overrides"] = {"head_dtype": "float32"}
    if lora:
        rank = adapter_rank(tuned_dir)
        if rank > max_lora_rank:
            raise RecrankerError(f"rank.vllm.max_lora_rank: {max_lora_rank} is below the adapter's rank "
                                 f"{rank} ({Path(tuned_dir) / 'adapter_config.json'})")
        kw.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1)
    return kw


def sampling_kwargs(s: Sampling) -> dict[str, Any]:
    """``vllm.SamplingParams(**kwargs)`` for generation (top_k 0 = disabled → vLLM's -1)."""
    return {
        "temperature": float(s.temperature),
        "top_k": int(s.top_k) if s.top_k and s.top_k > 0 else -1,
        "top_p": float(s.top_p),
        "max_tokens": int(s.max_new_tokens),
        "seed": int(s.seed),
    }


def scoring_kwargs() -> dict[str, Any]:
    """``SamplingParams`` for scoring a fixed answer: one dummy token, prompt log-probs only (each
    position's log-prob of the prompt's own next token)."""
    return {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "detokenize": False}


def label_kwargs(label_ids: Sequence[int]) -> dict[str, Any]:
    """``SamplingParams`` that read the next-token log-probs of single-token labels in one request:
    a greedy one-token generation returning the raw log-probs of exactly ``label_ids``."""
    ids = [int(t) for t in label_ids]
    if not ids or len(set(ids)) != len(ids):
        raise RecrankerError(f"label tokens must be distinct and non-empty: {ids}")
    if len(ids) > VLLM_MAX_LOGPROBS:
        raise RecrankerError(f"{len(ids)} labels in one request; vLLM returns at most {VLLM_MAX_LOGPROBS}")
    return {"max_tokens": 1, "temperature": 0.0, "logprob_token_ids": ids, "detokenize": False}


def fits_one_request(label_ids: Sequence[int] | None) -> bool:
    """Whether a label set is scored in one request (single-token labels, few enough of them)."""
    return label_ids is not None and 0 < len(label_ids) <= VLLM_MAX_LOGPROBS


def label_prompts(prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
    """One token-id prompt per answer: ``prompt_ids + answer_ids`` (exact token boundaries)."""
    for a in answers:
        if not a:
            raise RecrankerError("empty answer tokens")
    return [{"prompt_token_ids": list(prompt_ids) + list(a)} for a in answers]


def _logprob(entry: Mapping[int, Any], token: int) -> float:
    lp = entry[token]
    return float(getattr(lp, "logprob", lp))


def answer_logprob(prompt_logprobs: Sequence[Mapping[int, Any] | None], token_ids: Sequence[int], start: int) -> float:
    """Sum of log P(token_ids[t]) for t >= start from vLLM's ``RequestOutput.prompt_logprobs``
    (position t: ``{token_id: Logprob(logprob=...)}``, the first entry None)."""
    if len(prompt_logprobs) != len(token_ids):
        raise RecrankerError(f"vLLM returned {len(prompt_logprobs)} prompt log-probs for {len(token_ids)} tokens")
    total = 0.0
    for t in range(start, len(token_ids)):
        entry = prompt_logprobs[t]
        if entry is None or token_ids[t] not in entry:
            raise RecrankerError(f"vLLM returned no log-prob for prompt token {t}")
        total += _logprob(entry, token_ids[t])
    return total


def next_token_logprobs(sample_logprobs: Sequence[Mapping[int, Any]] | None, label_ids: Sequence[int]) -> np.ndarray:
    """The labels' log-probs from the first generated position of ``CompletionOutput.logprobs``
    (``[{token_id: Logprob}]``; with ``logprob_token_ids`` it holds the labels and the sampled token)."""
    if not sample_logprobs:
        raise RecrankerError("vLLM returned no next-token log-probs")
    entry = sample_logprobs[0]
    missing = [t for t in label_ids if t not in entry]
    if missing:
        raise RecrankerError(f"vLLM returned no log-prob for label tokens {missing}")
    return np.array([_logprob(entry, t) for t in label_ids], dtype=np.float64)


class VLLMBackend(Backend):
    """vLLM offline engine. Never run in this project's CI (see the module docstring)."""

    name = "vllm"

    def __init__(self, base_dir, tuned_dir=None, **kwargs):
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise RecrankerError(
                "rank.backend: vllm is not installed (GPU only: pip install 'recranker[gpu]')"
            ) from None
        from recranker.llm.model import load_tokenizer

        kw = engine_kwargs(base_dir, tuned_dir, **kwargs)
        self._SamplingParams = SamplingParams
        self.llm = LLM(**kw)
        # Our tokenizer, not the engine's: prompts are sent as token ids, encoded exactly as the hf
        # backend encodes them, so both backends score the same tokens.
        self.tokenizer = load_tokenizer(str(base_dir))
        self.lora = LoRARequest("recranker", 1, str(tuned_dir)) if kw.get("enable_lora") else None

    def _ids(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        from recranker.llm.scoring import chat_prompt_ids

        return chat_prompt_ids(self.tokenizer, [p.as_dicts() for p in prompts])

    def _generate(self, reqs, params):
        return self.llm.generate(reqs, params, lora_request=self.lora, use_tqdm=False)

    def continuation_logprobs(self, prompts, continuations) -> list[np.ndarray]:
        if len(prompts) != len(continuations):
            raise RecrankerError(f"{len(prompts)} prompts but {len(continuations)} continuation lists")
        reqs, meta = [], []
        for i, (ids, conts) in enumerate(zip(self._ids(prompts), continuations)):
            answers = [self.tokenizer.encode(c, add_special_tokens=False) for c in conts]
            for j, r in enumerate(label_prompts(ids, answers)):
                reqs.append(r)
                meta.append((i, j, len(ids)))
        result = [np.zeros(len(c)) for c in continuations]
        if not reqs:
            return result
        outs = self._generate(reqs, self._SamplingParams(**scoring_kwargs()))
        for (i, j, start), r, o in zip(meta, reqs, outs):
            result[i][j] = answer_logprob(o.prompt_logprobs, r["prompt_token_ids"], start)
        return result

    def label_logprobs(self, prompts, labels) -> np.ndarray:
        rows = self.label_logprobs_multi(prompts, [labels] * len(prompts))
        return np.stack(rows) if rows else np.zeros((0, len(labels)))

    def label_logprobs_multi(self, prompts, label_sets) -> list[np.ndarray]:
        """Single-token label sets: one request per prompt, all in one engine call; the others
        as complete answers (label + end of turn) through :meth:`continuation_logprobs`."""
        from recranker.llm.scoring import complete_answers, single_token_labels

        if len(prompts) != len(label_sets):
            raise RecrankerError(f"{len(prompts)} prompts but {len(label_sets)} label sets")
        ids = single_token_labels(self.tokenizer, label_sets)
        out: list[np.ndarray] = [np.zeros(0)] * len(prompts)
        fast = [i for i, labels in enumerate(label_sets) if fits_one_request(ids[tuple(labels)])]
        if fast:
            encoded = self._ids([prompts[i] for i in fast])
            params = [self._SamplingParams(**label_kwargs(ids[tuple(label_sets[i])])) for i in fast]
            outs = self._generate([{"prompt_token_ids": e} for e in encoded], params)
            for i, o in zip(fast, outs):
                out[i] = next_token_logprobs(o.outputs[0].logprobs, ids[tuple(label_sets[i])])
        done = set(fast)
        slow = [i for i in range(len(prompts)) if i not in done]
        if slow:
            conts = [complete_answers(self.tokenizer, label_sets[i]) for i in slow]
            for i, row in zip(slow, self.continuation_logprobs([prompts[i] for i in slow], conts)):
                out[i] = row
        return out

    def generate(self, prompts, sampling: Sampling) -> list[str]:
        reqs = [{"prompt_token_ids": ids} for ids in self._ids(prompts)]
        outs = self._generate(reqs, self._SamplingParams(**sampling_kwargs(sampling)))
        return [o.outputs[0].text for o in outs]
