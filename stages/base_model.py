"""Stage `base-model`: turn llm.base_model into a local safetensors dir (models/base/).

Converting the GGUF once saves every later stage the de-quantization (~20 s); "tiny-random"
writes a small randomly initialised model with the real tokenizer (tests, tiny end-to-end runs).
"""

from __future__ import annotations

import json

import typer

from stages import paths
from stages.common import params

TINY_RANDOM = "tiny-random"


def base_model() -> None:
    """Write models/base/ (model + tokenizer + chat template) from params llm.base_model."""
    from recranker.io import atomic_path
    from recranker.llm.model import load_model, load_tokenizer, make_tiny_base, save_base

    p = params("llm")
    source = p.llm.base_model
    with atomic_path(paths.base_model(), is_dir=True) as tmp:
        if source == TINY_RANDOM:
            t = p.llm.tiny
            make_tiny_base(tmp, seed=p.seed, hidden=t.hidden, layers=t.layers, heads=t.heads)
        else:
            # the checkpoint's own dtype (a 7B model stays bf16/fp16; the GGUF default is fp32)
            save_base(load_model(source, dtype="auto"), load_tokenizer(source, p.llm.chat_template), tmp)
        n_params = json.loads((tmp / "config.json").read_text())
        info = {"source": source, "seed": p.seed if source == TINY_RANDOM else None,
                "layers": n_params.get("num_hidden_layers"), "hidden": n_params.get("hidden_size")}
        (tmp / "recranker_base.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    typer.echo(f"base-model: {source} → {paths.base_model()}")
