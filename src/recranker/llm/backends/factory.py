"""One place that turns a rank configuration into a running backend (hf, openai or vllm).

``rp`` is the rank section (``backend``, ``dtype``, ``threads``, ``workers``, ``batch_size``,
``min_prefix``, ``openai``, ``vllm``); the caller passes the model directories, so this module
knows no pipeline paths.
"""

from __future__ import annotations

from pathlib import Path


def scorer_layout(requested: int, cpu_threads: int, gpus: int) -> tuple[int, int, list[str]]:
    """(worker processes, torch threads each, device of each worker) for the hf backend.

    With GPUs: one scorer per GPU (``requested`` is ignored: a GPU is filled by one process's
    batches, and two processes on one GPU would hold two copies of the model); one GPU scores in
    this process. On a CPU: at most one worker per torch thread, the threads split evenly.
    """
    if gpus > 0:
        return gpus, max(1, cpu_threads // gpus), [f"cuda:{i}" for i in range(gpus)]
    workers = max(1, min(requested, cpu_threads))
    return workers, max(1, cpu_threads // workers), ["cpu"] * workers


def hf_workers(requested: int) -> tuple[int, int, list[str]]:
    """:func:`scorer_layout` on this machine (its visible GPUs: CUDA_VISIBLE_DEVICES chooses)."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return scorer_layout(requested, torch.get_num_threads(), gpus)


def make_backend(rp, base_dir: Path, tuned_dir: Path | None, *, seed: int, progress: bool = True):
    """The backend ``rp.backend`` over ``base_dir`` (+ the adapter/model in ``tuned_dir``)."""
    if rp.backend == "hf":
        import torch

        from recranker.llm.backends.hf import HFBackend

        if rp.threads:
            torch.set_num_threads(rp.threads)
        workers, threads, devices = hf_workers(rp.workers)
        return HFBackend.from_dirs(
            base_dir, tuned_dir, dtype=rp.dtype, batch_size=rp.batch_size, min_prefix=rp.min_prefix,
            progress=progress, workers=workers, threads=threads, devices=devices,
        )  # fmt: skip
    if rp.backend == "openai":
        from recranker.llm.backends.openai import OpenAIBackend

        o = rp.openai
        tokenizer = None
        if (Path(base_dir) / "tokenizer_config.json").is_file():
            from recranker.llm.model import load_tokenizer

            tokenizer = load_tokenizer(str(base_dir))  # exact label log-probs via echo
        return OpenAIBackend(o.base_url, o.model, tokenizer=tokenizer, api_key_env=o.api_key_env,
                             timeout=o.timeout, max_retries=o.max_retries, top_logprobs=o.top_logprobs,
                             batch_size=rp.batch_size)
    from recranker.llm.backends.vllm import VLLMBackend

    v = rp.vllm
    return VLLMBackend(str(base_dir), tuned_dir, dtype=rp.dtype,
                       gpu_memory_utilization=v.gpu_memory_utilization, max_lora_rank=v.max_lora_rank,
                       max_model_len=v.max_model_len, enable_prefix_caching=v.enable_prefix_caching,
                       seed=seed)
