"""Inference backends behind one interface: hf (CPU/GPU), vllm (GPU only), openai (any compatible endpoint)."""
