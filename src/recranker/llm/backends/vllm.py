"""The `vllm` backend (GPU only; the `gpu` extra). NOT RUN ON A GPU in this project's CI.

What is tested here (tests/test_backends_vllm.py) is the translation layer: our requests and
params → vLLM engine arguments, ``SamplingParams`` keyword arguments, token-id prompts and the
reading of vLLM's prompt log-probs. The engine calls themselves follow vLLM's documented
offline API (``LLM.generate`` with ``LoRARequest``) but have not been executed here.

Design: the LoRA adapter is served through ``LoRARequest`` (no merge, several adapters could
share one engine); automatic prefix caching is on, so the shared user prefix of a user's
prompts is computed once, as in the `hf` scorer. Labels are scored exactly: ``prompt + label``
is sent as a token-id prompt with ``prompt_logprobs=0`` and the label tokens' log-probs summed.
Generation uses the paper's sampling settings (temperature 0.1, top-k 10, top-p 0.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Backend, Prompt, Sampling


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
    if lora:
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
    """``SamplingParams`` for scoring a fixed answer: one dummy token, prompt log-probs only."""
    return {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "detokenize": False}


def label_prompts(prompt_ids: Sequence[int], answers: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
    """One token-id prompt per answer: ``prompt_ids + answer_ids`` (exact token boundaries)."""
    for a in answers:
        if not a:
            raise RecrankerError("empty answer tokens")
    return [{"prompt_token_ids": list(prompt_ids) + list(a)} for a in answers]


def answer_logprob(prompt_logprobs: Sequence[Mapping[int, Any] | None], token_ids: Sequence[int], start: int) -> float:
    """Sum of log P(token_ids[t]) for t >= start from vLLM's ``RequestOutput.prompt_logprobs``
    (position t: ``{token_id: Logprob(logprob=...)}``, the first entry None)."""
    total = 0.0
    for t in range(start, len(token_ids)):
        entry = prompt_logprobs[t]
        if entry is None or token_ids[t] not in entry:
            raise RecrankerError(f"vLLM returned no log-prob for prompt token {t}")
        lp = entry[token_ids[t]]
        total += float(getattr(lp, "logprob", lp))
    return total


class VLLMBackend(Backend):
    """vLLM offline engine. Not run on a GPU here (see the module docstring)."""

    name = "vllm"

    def __init__(self, base_dir, tuned_dir=None, **kwargs):
        try:
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise RecrankerError(
                "rank.backend: vllm is not installed (GPU only: pip install 'recranker[gpu]')"
            ) from None
        kw = engine_kwargs(base_dir, tuned_dir, **kwargs)
        self._SamplingParams = SamplingParams
        self.llm = LLM(**kw)
        self.tokenizer = self.llm.get_tokenizer()
        self.lora = LoRARequest("recranker", 1, str(tuned_dir)) if kw.get("enable_lora") else None

    def _ids(self, prompt: Prompt) -> list[int]:
        text = self.tokenizer.apply_chat_template(prompt.as_dicts(), add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def continuation_logprobs(self, prompts, continuations) -> list[np.ndarray]:
        reqs, meta = [], []
        for i, (p, conts) in enumerate(zip(prompts, continuations)):
            ids = self._ids(p)
            answers = [self.tokenizer.encode(c, add_special_tokens=False) for c in conts]
            for j, r in enumerate(label_prompts(ids, answers)):
                reqs.append(r)
                meta.append((i, j, len(ids)))
        params = self._SamplingParams(**scoring_kwargs())
        outs = self.llm.generate(reqs, params, lora_request=self.lora, use_tqdm=False)
        result = [np.zeros(len(c)) for c in continuations]
        for (i, j, start), r, o in zip(meta, reqs, outs):
            result[i][j] = answer_logprob(o.prompt_logprobs, r["prompt_token_ids"], start)
        return result

    def label_logprobs(self, prompts, labels) -> np.ndarray:
        rows = self.continuation_logprobs(prompts, [list(labels)] * len(prompts))
        return np.stack(rows) if rows else np.zeros((0, len(labels)))

    def generate(self, prompts, sampling: Sampling) -> list[str]:
        reqs = [{"prompt_token_ids": self._ids(p)} for p in prompts]
        params = self._SamplingParams(**sampling_kwargs(sampling))
        outs = self.llm.generate(reqs, params, lora_request=self.lora, use_tqdm=False)
        return [o.outputs[0].text for o in outs]
