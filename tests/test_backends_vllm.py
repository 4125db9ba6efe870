"""The vLLM backend's translation layer (vLLM itself is GPU-only and not installed here)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Sampling
from recranker.llm.backends.vllm import (
    VLLMBackend,
    answer_logprob,
    engine_kwargs,
    label_prompts,
    sampling_kwargs,
    scoring_kwargs,
)


def test_paper_sampling_settings_translate():
    kw = sampling_kwargs(Sampling())  # defaults = the paper's: 0.1 / 10 / 0.1
    assert kw == {"temperature": 0.1, "top_k": 10, "top_p": 0.1, "max_tokens": 160, "seed": 0}
    assert sampling_kwargs(Sampling(top_k=0))["top_k"] == -1  # vLLM's "disabled"
    assert scoring_kwargs()["prompt_logprobs"] == 0


def test_engine_kwargs_lora_vs_full_model(tmp_path):
    adapter = tmp_path / "sft"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    kw = engine_kwargs("models/base", adapter, max_lora_rank=16)
    assert kw["model"] == "models/base" and kw["enable_lora"] and kw["max_lora_rank"] == 16
    assert kw["enable_prefix_caching"] is True and kw["trust_remote_code"] is False
    full = tmp_path / "full"
    full.mkdir()
    kw = engine_kwargs("models/base", full)
    assert kw["model"] == str(full) and "enable_lora" not in kw
    assert engine_kwargs("models/base", None)["model"] == "models/base"


@dataclass
class Logprob:  # the shape of vllm.sequence.Logprob
    logprob: float


def test_answer_logprob_reads_prompt_logprobs():
    reqs = label_prompts([5, 6, 7], [[9], [10, 11]])
    assert reqs == [{"prompt_token_ids": [5, 6, 7, 9]}, {"prompt_token_ids": [5, 6, 7, 10, 11]}]
    plp = [None, {6: Logprob(-1.0)}, {7: Logprob(-2.0)}, {10: Logprob(-0.5), 3: Logprob(-0.1)},
           {11: Logprob(-0.25)}]
    assert answer_logprob(plp, reqs[1]["prompt_token_ids"], 3) == pytest.approx(-0.75)
    with pytest.raises(RecrankerError):
        answer_logprob(plp, [5, 6, 7, 99], 3)
    with pytest.raises(RecrankerError):
        label_prompts([1], [[]])


def test_missing_vllm_is_a_one_line_error():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(RecrankerError, match="vllm is not installed"):
            VLLMBackend("models/base")
    else:  # pragma: no cover - GPU machines
        pytest.skip("vllm installed")
