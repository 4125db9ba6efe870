"""params.yaml → rank.* and evaluate.* (stages `rank`, `evaluate`; `serve` reuses rank.*). Owned by the ranking engineer.

Defaults: a CPU profile (hf backend, float32, prefix-cached scoring); RecRanker's paper values
for the hybrid formula and the vLLM sampling settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recranker.ranking.config import HybridWeights
from recranker.tasks import TASKS, Task

from .base import Strict


class SamplingParams(Strict):
    """Generation (listwise `generate` mode). Paper (vLLM): temperature 0.1, top-k 10, top-p 0.1."""

    temperature: float = Field(0.1, ge=0)
    top_k: int = Field(10, ge=0)
    top_p: float = Field(0.1, gt=0, le=1)
    max_new_tokens: int = Field(160, ge=1)


class OpenAIParams(Strict):
    """Any OpenAI-compatible endpoint; the API key is read from the environment variable named here."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "recranker"
    api_key_env: str = "RECRANKER_API_KEY"
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    top_logprobs: int = Field(20, ge=1, le=20)


class VLLMParams(Strict):
    """GPU only (the `gpu` extra)."""

    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_lora_rank: int = Field(64, ge=1)
    max_model_len: int = Field(2048, ge=64)
    enable_prefix_caching: bool = True


class RankParams(Strict):
    tasks: list[Task] = list(TASKS)
    model: Literal["sft", "dmpo", "base"] = "sft"  # models/llm/<model>/, or the untuned base
    backend: Literal["hf", "vllm", "openai"] = "hf"
    # bf16 halves ranking time on CPUs with avx512_bf16; the final norm and LM head stay fp32
    # (benchmarks/rank_throughput.py measures the agreement with fp32).
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    threads: int = Field(0, ge=0)  # torch threads for the hf backend, all workers together; 0 = torch's default
    # hf backend on a CPU: score users in this many processes, threads/workers torch threads each
    # (two 1-thread workers beat one 2-thread process by 13% on 2 cores: small matmuls scale
    # poorly across threads). Ignored on a GPU.
    workers: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)  # candidate suffixes per forward pass
    min_prefix: int = Field(16, ge=1)  # shortest shared prefix worth caching (tokens)
    rating_mode: Literal["expected", "argmax"] = "expected"
    listwise_mode: Literal["verbalizer", "generate"] = "verbalizer"
    sampling: SamplingParams = SamplingParams()
    openai: OpenAIParams = OpenAIParams()
    vllm: VLLMParams = VLLMParams()


class EvaluateParams(Strict):
    ks: list[int] = [3, 5]
    hybrid: HybridWeights = HybridWeights()  # the paper's weights (used as given with weights: paper)
    # validation: C1-C3 and a1-a3 chosen on the valid split's predictions (rank --split valid) from
    # a grid that starts with `hybrid`; paper: `hybrid` as given.
    weights: Literal["validation", "paper"] = "validation"
    bootstrap: int = Field(2000, ge=100)  # paired bootstrap resamples of the test users (95% CI)
    samples: int = Field(20, ge=0)  # sample prompts/outputs logged as a W&B table

