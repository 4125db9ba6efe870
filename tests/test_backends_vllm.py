"""The vLLM backend. vLLM is GPU-only and does not install here, so what runs here is its
translation layer (pure functions) and the backend's request routing against a stand-in engine
computed with the real HF model; the HF-vs-vLLM parity test runs wherever vLLM imports."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Prompt, Sampling
from recranker.llm.backends.config import VLLMConfig
from recranker.llm.backends.vllm import (
    VLLM_LORA_RANKS,
    VLLM_MAX_LOGPROBS,
    VLLMBackend,
    adapter_rank,
    answer_logprob,
    engine_kwargs,
    fits_one_request,
    label_kwargs,
    label_prompts,
    next_token_logprobs,
    sampling_kwargs,
    scoring_kwargs,
)


def _adapter(path, r=8, **extra):
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": r, **extra}))
    return path


def test_paper_sampling_settings_translate():
    kw = sampling_kwargs(Sampling())  # defaults = the paper's: 0.1 / 10 / 0.1
    assert kw == {"temperature": 0.1, "top_k": 10, "top_p": 0.1, "max_tokens": 160, "seed": 0}
    assert sampling_kwargs(Sampling(top_k=0))["top_k"] == -1  # vLLM's "disabled"
    assert scoring_kwargs()["prompt_logprobs"] == 0


def test_engine_kwargs_lora_vs_full_model(tmp_path):
    adapter = _adapter(tmp_path / "sft", r=16)
    kw = engine_kwargs("models/base", adapter, max_lora_rank=16)
    assert kw["model"] == "models/base" and kw["enable_lora"] and kw["max_lora_rank"] == 16
    assert kw["enable_prefix_caching"] is True and kw["trust_remote_code"] is False
    full = tmp_path / "full"
    full.mkdir()
    kw = engine_kwargs("models/base", full)
    assert kw["model"] == str(full) and "enable_lora" not in kw
    assert engine_kwargs("models/base", None)["model"] == "models/base"


def test_bf16_engine_keeps_fp32_logits_like_hf():
    assert engine_kwargs("b", None, dtype="bfloat16")["hf_overrides"] == {"head_dtype": "float32"}
    assert "hf_overrides" not in engine_kwargs("b", None, dtype="float32")


def test_lora_ranks_vllm_refuses_are_refused(tmp_path):
    # The params schema and the engine arguments agree with vLLM 0.32.0's own list.
    assert typing.get_args(VLLMConfig.model_fields["max_lora_rank"].annotation) == VLLM_LORA_RANKS
    for bad in (2, 4, 24, 100, 1024):
        with pytest.raises(RecrankerError, match="rank.vllm.max_lora_rank: .* not one vLLM serves"):
            engine_kwargs("b", None, max_lora_rank=bad)
        with pytest.raises(ValueError):
            VLLMConfig(max_lora_rank=bad)
    assert VLLMConfig(max_lora_rank=320).max_lora_rank == 320
    # ...and a rank below the adapter's own (vLLM would fail when the adapter is first loaded).
    with pytest.raises(RecrankerError, match="below the adapter's rank 32"):
        engine_kwargs("b", _adapter(tmp_path / "a", r=32), max_lora_rank=16)
    assert adapter_rank(_adapter(tmp_path / "p", r=8, rank_pattern={"q_proj": 64})) == 64
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "adapter_config.json").write_text("{not json")
    with pytest.raises(RecrankerError, match="cannot read the adapter's config"):
        engine_kwargs("b", tmp_path / "broken")


def test_params_file_refuses_a_rank_vllm_refuses():
    import yaml

    from stages.params import check_params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    raw["rank"].setdefault("vllm", {})["max_lora_rank"] = 48
    with pytest.raises(RecrankerError) as err:
        check_params(raw, "params.yaml")
    assert str(err.value).startswith("params.yaml: rank.vllm.max_lora_rank: Input should be 1, 8, 16")
    raw["rank"]["vllm"]["max_lora_rank"] = 128
    assert check_params(raw, "params.yaml").rank.vllm.max_lora_rank == 128


@dataclass
class Logprob:  # the shape of vllm.logprobs.Logprob
    logprob: float


def test_answer_logprob_reads_prompt_logprobs():
    reqs = label_prompts([5, 6, 7], [[9], [10, 11]])
    assert reqs == [{"prompt_token_ids": [5, 6, 7, 9]}, {"prompt_token_ids": [5, 6, 7, 10, 11]}]
    plp = [None, {6: Logprob(-1.0)}, {7: Logprob(-2.0)}, {10: Logprob(-0.5), 3: Logprob(-0.1)},
           {11: Logprob(-0.25)}]
    assert answer_logprob(plp, reqs[1]["prompt_token_ids"], 3) == pytest.approx(-0.75)
    with pytest.raises(RecrankerError):
        answer_logprob(plp, [5, 6, 7, 99, 11], 3)
    with pytest.raises(RecrankerError, match="4 tokens"):
        answer_logprob(plp, [5, 6, 7, 10], 3)
    with pytest.raises(RecrankerError):
        label_prompts([1], [[]])


def test_single_token_labels_are_one_request_per_prompt():
    kw = label_kwargs([17, 18, 19])
    assert kw == {"max_tokens": 1, "temperature": 0.0, "logprob_token_ids": [17, 18, 19], "detokenize": False}
    assert "prompt_logprobs" not in kw  # prompt_logprobs would stop vLLM reading the prefix cache
    sample = [{19: Logprob(-0.1), 17: Logprob(-3.0), 18: Logprob(-2.0)}]  # sampled token + labels
    np.testing.assert_array_equal(next_token_logprobs(sample, [17, 18, 19]), [-3.0, -2.0, -0.1])
    with pytest.raises(RecrankerError, match="label tokens \\[20\\]"):
        next_token_logprobs(sample, [17, 20])
    with pytest.raises(RecrankerError):
        next_token_logprobs([], [17])
    with pytest.raises(RecrankerError):
        label_kwargs([3, 3])
    assert fits_one_request([1, 2]) and not fits_one_request(None) and not fits_one_request([])
    assert not fits_one_request(list(range(VLLM_MAX_LOGPROBS + 1)))


# -- the backend's routing, against a stand-in engine computed by the HF model -------------------


class _Output:
    def __init__(self, logprobs=None, text=""):
        self.logprobs, self.text = logprobs, text


class _RequestOutput:
    def __init__(self, prompt_logprobs=None, outputs=()):
        self.prompt_logprobs, self.outputs = prompt_logprobs, list(outputs)


class HFStandInEngine:
    """Answers ``LLM.generate`` the way vLLM 0.32.0 shapes its outputs (prompt_logprobs: one entry
    per prompt token, the first None; logprob_token_ids: the first generated position's
    ``{token: Logprob}``), computed with the HF scorer on the real tiny model. It stands in for
    vLLM, which cannot run here; it checks the backend's requests and readings, not vLLM."""

    def __init__(self, model):
        from recranker.llm.scoring import PrefixCachedScorer

        self.scorer = PrefixCachedScorer(model, batch_size=1, use_prefix_cache=False)
        self.calls = []

    def generate(self, reqs, params, lora_request=None, use_tqdm=False):
        from recranker.llm.scoring import ScoreRequest

        params = params if isinstance(params, list) else [params] * len(reqs)
        self.calls.append([dict(p) for p in params])
        outs = []
        for r, p in zip(reqs, params):
            ids = r["prompt_token_ids"]
            if "logprob_token_ids" in p:
                res = self.scorer.score([ScoreRequest(tuple(ids), tuple(p["logprob_token_ids"]))])[0]
                entry = {t: Logprob(float(v)) for t, v in zip(p["logprob_token_ids"], res.targets)}
                outs.append(_RequestOutput(outputs=[_Output([entry])]))
            elif p.get("prompt_logprobs") == 0:
                res = self.scorer.score([ScoreRequest(tuple(ids), (), len(ids) - 1)])[0]
                plp = [None] + [{t: Logprob(float(v))} for t, v in zip(ids[1:], res.token_logprobs)]
                outs.append(_RequestOutput(prompt_logprobs=plp))
            else:
                raise AssertionError(f"unexpected request {p}")
        return outs


@pytest.fixture(scope="module")
def stand_in(tok):
    torch = pytest.importorskip("torch")
    from recranker.llm.backends.hf import HFBackend
    from recranker.llm.model import tiny_random_model

    torch.set_num_threads(1)
    model = tiny_random_model(tok, seed=4)
    backend = VLLMBackend.__new__(VLLMBackend)  # no engine: vLLM is not installed here
    backend.tokenizer, backend.lora, backend._SamplingParams = tok, None, dict
    backend.llm = HFStandInEngine(model)
    return backend, HFBackend(model, tok, batch_size=2, min_prefix=4)


def _prompts(n=3):
    return [Prompt.from_messages([{"role": "system", "content": "You rank movies."},
                                  {"role": "user", "content": f"User {u} watched Heat. Rate Fargo? 1-5"}], group=u)
            for u in range(n)]


def test_routing_matches_the_hf_backend_label_definition(stand_in):
    vllm_backend, hf = stand_in
    prompts = _prompts()
    ratings = ["1", "2", "3", "4", "5"]
    titles = ["Toy Story", "Heat (1995)"]  # multi-token: scored as label + end of turn, like HF
    engine = vllm_backend.llm
    engine.calls.clear()
    got = vllm_backend.label_logprobs_multi(prompts, [ratings, titles, ratings])
    want = hf.label_logprobs_multi(prompts, [ratings, titles, ratings])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    # One engine call for the single-token sets, one request per prompt; one per title label.
    assert [len(c) for c in engine.calls] == [2, 2]
    assert all("logprob_token_ids" in p for p in engine.calls[0])
    np.testing.assert_allclose(vllm_backend.label_logprobs(prompts, ["Yes", "No"]),
                               hf.label_logprobs(prompts, ["Yes", "No"]), atol=1e-4, rtol=0)
    conts = [["Babe (1995)", "Up"]] * len(prompts)
    for g, w in zip(vllm_backend.continuation_logprobs(prompts, conts), hf.continuation_logprobs(prompts, conts)):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    # Negative control: without the end-of-turn token the title scores differ clearly.
    bare = vllm_backend.continuation_logprobs(prompts[1:2], [titles])[0]
    assert np.abs(bare - got[1]).max() > 1e-2


def test_missing_vllm_is_a_one_line_error():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(RecrankerError, match="vllm is not installed"):
            VLLMBackend("models/base")
    else:  # pragma: no cover - GPU machines
        pytest.skip("vllm installed")


# -- parity with the hf backend on the same adapter (wherever vLLM imports: a CUDA machine) ----------

# float32: the same weights and arithmetic up to kernel order. bfloat16: both bodies run in bf16
# with different kernels, and vLLM's final norm and output weights are bf16 where HF keeps fp32: an
# estimated bound (no GPU was available to measure it when it was written).
PARITY_ATOL = {"float32": 2e-3, "bfloat16": 0.15}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hf_and_vllm_agree_on_the_same_adapter(tmp_path, tok, dtype):
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():  # pragma: no cover - vllm without a GPU
        pytest.skip("vLLM needs a CUDA GPU")
    from peft import LoraConfig, get_peft_model

    from recranker.llm.backends.hf import HFBackend
    from recranker.llm.model import save_base, tiny_random_model

    base = save_base(tiny_random_model(tok, seed=5, hidden=128, layers=2, heads=2), tok, tmp_path / "base")
    model = tiny_random_model(tok, seed=5, hidden=128, layers=2, heads=2)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      init_lora_weights=False)  # random B: the adapter changes the answers
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(6)
        get_peft_model(model, lora).save_pretrained(tmp_path / "adapter")
    prompts = _prompts(4)
    ratings, titles = ["1", "2", "3", "4", "5"], ["Toy Story", "Heat (1995)"]
    with HFBackend.from_dirs(base, tmp_path / "adapter", dtype=dtype, devices=["cuda:0"]) as hf:
        want = hf.label_logprobs_multi(prompts, [ratings, titles, ratings, ["Yes", "No"]])
        want_cont = hf.continuation_logprobs(prompts, [["Babe (1995)"]] * 4)
    v = VLLMBackend(base, tmp_path / "adapter", dtype=dtype, max_lora_rank=8, max_model_len=512,
                    gpu_memory_utilization=0.3)
    got = v.label_logprobs_multi(prompts, [ratings, titles, ratings, ["Yes", "No"]])
    got_cont = v.continuation_logprobs(prompts, [["Babe (1995)"]] * 4)
    tol = PARITY_ATOL[dtype]
    for g, w in zip([*got, *got_cont], [*want, *want_cont]):
        np.testing.assert_allclose(g, w, atol=tol, rtol=0)
