"""Randomly initialised Llamas with the shapes of real 1B and 7B models (throughput checks).

The time and memory of a forward/backward pass or of scoring depend on the shapes only, not on the
weights, so a random model of the right shape measures a real model's throughput without
downloading it (no hub is reachable on the GPU check machine). The vocabulary is the tokenizer's.
"""

from __future__ import annotations

from typing import Any

from recranker.errors import RecrankerError

# Published configs: TinyLlama-1.1B (Llama-2 architecture, GQA) and Llama-2-7B.
SHAPES: dict[str, dict[str, int]] = {
    "1b": {"hidden": 2048, "intermediate": 5632, "layers": 22, "heads": 32, "kv_heads": 4},
    "7b": {"hidden": 4096, "intermediate": 11008, "layers": 32, "heads": 32, "kv_heads": 32},
}


def shape_config(tokenizer, shape: str, *, layers: int | None = None, scale: int = 1):
    """The ``LlamaConfig`` of SHAPE with ``tokenizer``'s vocabulary; ``layers`` and ``scale`` (width
    divided by it) shrink it for tests."""
    from transformers import LlamaConfig

    if shape not in SHAPES:
        raise RecrankerError(f"unknown model shape {shape!r} (known: {', '.join(SHAPES)})")
    if scale < 1:
        raise RecrankerError(f"scale must be >= 1 (got {scale})")
    s = SHAPES[shape]
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=s["hidden"] // scale,
        intermediate_size=s["intermediate"] // scale,
        num_hidden_layers=layers or s["layers"],
        num_attention_heads=max(1, s["heads"] // scale),
        num_key_value_heads=max(1, s["kv_heads"] // scale),
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def shaped_random_model(tokenizer, shape: str, *, seed: int = 0, dtype: Any = None, device: str = "cpu",
                        layers: int | None = None, scale: int = 1):
    """A random Llama of SHAPE ("1b", "7b"), built directly on ``device`` in ``dtype`` (no fp32
    host copy of a 7B model). Seeded: the same arguments give the same weights on one device."""
    import torch
    from transformers import LlamaForCausalLM

    config = shape_config(tokenizer, shape, layers=layers, scale=scale)
    with torch.random.fork_rng(devices=[] if device == "cpu" else [torch.device(device)]):
        torch.manual_seed(seed)
        with torch.device(device):
            model = LlamaForCausalLM._from_config(config, dtype=dtype or torch.float32)
    return model.eval()


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
