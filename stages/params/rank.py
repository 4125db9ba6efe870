"""params.yaml → rank.* and evaluate.* (stages `rank`, `evaluate`; `serve` reuses rank.*). Owned by the ranking engineer.

Defaults: a CPU profile (hf backend, float32, prefix-cached scoring); RecRanker's paper values
for the hybrid formula and the vLLM sampling settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recranker.llm.backends.config import GenerationConfig, OpenAIConfig, VLLMConfig
from recranker.llm.config import Precision
from recranker.ranking.config import HybridWeights
from recranker.tasks import TASKS, Task

from .base import Strict


class RankParams(Strict):
    tasks: list[Task] = Field(list(TASKS), min_length=1)
    model: Literal["sft", "dmpo", "base"] = "sft"  # models/llm/<model>/, or the untuned base
    backend: Literal["hf", "vllm", "openai"] = "hf"
    # auto: bf16 where the device computes it natively (CUDA, CPUs with AVX512-BF16/AMX), where it
    # halves ranking time; fp32 where bf16 is only emulated (recranker.llm.precision). The final
    # norm and LM head stay fp32 (benchmarks/rank_throughput.py measures the agreement with fp32).
    dtype: Precision = "auto"
    # item_in_candidates: score only the users whose held-out item is among the backbone's
    # candidates. The others are misses whatever the LLM says, so every HR/NDCG, interval and the
    # weights chosen on validation are as with `all` (tests/test_ranking_stages.py), in ~1/7 of
    # ML-100K's test prompts; statistics of the answers themselves (pairwise consistency, mean
    # scores, prediction counts) then cover these users only. all: every user's prompts.
    users: Literal["item_in_candidates", "all"] = "item_in_candidates"
    threads: int = Field(0, ge=0)  # torch threads for the hf backend, all workers together; 0 = torch's default
    # hf backend on a CPU: score users in this many processes, threads/workers torch threads each
    # (two 1-thread workers beat one 2-thread process by 13% on 2 cores: small matmuls scale
    # poorly across threads). Ignored on a GPU.
    workers: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)  # candidate suffixes per forward pass
    min_prefix: int = Field(16, ge=1)  # shortest shared prefix worth caching (tokens)
    rating_mode: Literal["expected", "argmax"] = "expected"
    listwise_mode: Literal["verbalizer", "generate"] = "verbalizer"
    sampling: GenerationConfig = GenerationConfig()  # the library's, like openai and vllm
    openai: OpenAIConfig = OpenAIConfig()
    vllm: VLLMConfig = VLLMConfig()


class EvaluateParams(Strict):
    ks: list[int] = Field([3, 5], min_length=1)
    hybrid: HybridWeights = HybridWeights()  # the paper's weights (used as given with weights: paper)
    # validation: C1-C3 and a1-a3 chosen on the valid split's predictions (rank --split valid) from
    # a grid that starts with `hybrid`; paper: `hybrid` as given.
    weights: Literal["validation", "paper"] = "validation"
    bootstrap: int = Field(2000, ge=100)  # paired bootstrap resamples of the test users (95% CI)
    samples: int = Field(20, ge=0)  # sample prompts/outputs logged as a W&B table

