"""The hyper-parameters of the inference backends, declared once (params.yaml ``rank.sampling``,
``rank.openai``, ``rank.vllm``; the factory, :mod:`.factory`, reads them). Light on purpose
(pydantic only): the params schema imports it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recranker.schema import Section


class GenerationConfig(Section):
    """Generation (listwise `generate` mode). Paper (vLLM): temperature 0.1, top-k 10, top-p 0.1."""

    temperature: float = Field(0.1, ge=0, description="sampling temperature (0: greedy)")
    top_k: int = Field(10, ge=0, description="sample among the k most likely tokens (0: off)")
    top_p: float = Field(0.1, gt=0, le=1, description="nucleus sampling mass")
    max_new_tokens: int = Field(160, ge=1, description="longest answer in tokens")


class OpenAIConfig(Section):
    """Any OpenAI-compatible endpoint; the API key is read from the environment variable named here."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="the endpoint's /v1 URL")
    model: str = Field("recranker", description="model name sent with every request")
    api_key_env: str = Field("RECRANKER_API_KEY", description="environment variable holding the API key")
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    max_retries: int = Field(4, ge=0, description="retries of a failed request")
    top_logprobs: int = Field(20, ge=1, le=20, description="log-probabilities asked per token (labels outside get -inf)")


class VLLMConfig(Section):
    """GPU only (the `gpu` extra)."""

    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of GPU memory vLLM may take")
    # vLLM 0.32.0 serves only these ranks (its vllm/config/lora.py MaxLoRARanks; the same tuple as
    # recranker.llm.backends.vllm.VLLM_LORA_RANKS, checked in tests/test_backends_vllm.py).
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] = Field(
        64, description="largest LoRA rank the engine serves (>= the adapter's llm.lora.r)")
    max_model_len: int = Field(2048, ge=64, description="context length (prompt + answer)")
    enable_prefix_caching: bool = Field(True, description="reuse the KV cache of shared prompt prefixes")
