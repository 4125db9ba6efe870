"""Stage-like command `serve`: an OpenAI-compatible HTTP server over the `hf` backend.

Serves models/base/ + models/llm/<rank.model>/ (rank.dtype, rank.batch_size) under the name
rank.openai.model, so `rank.backend: openai` with the default base_url talks to it. If the
environment variable named by rank.openai.api_key_env (default RECRANKER_API_KEY, never a hosted
provider's key) is set, requests must carry that key. Binds 127.0.0.1 unless told otherwise, and
warns when another interface is asked for. Not a DVC stage (it runs until stopped);
--max-requests / --idle-timeout bound it.
"""

from __future__ import annotations

import os

import typer

from stages.common import params


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (127.0.0.1 = this machine only)."),
    port: int = typer.Option(8000, help="TCP port (0 = any free port)."),
    max_requests: int = typer.Option(0, help="Stop after this many requests (0 = no limit)."),
    idle_timeout: float = typer.Option(0.0, help="Stop after this many idle seconds (0 = never)."),
    queue: int = typer.Option(16, min=1, help="Requests waiting for the model before 503 + Retry-After."),
    timeout: float = typer.Option(10.0, min=0.1, help="Seconds a client may stay idle or take to send a body."),
    max_tokens: int = typer.Option(1024, min=1, help="Largest max_tokens a request may ask for (also bounded by the context)."),
) -> None:
    """Serve /v1/models, /v1/completions and /v1/chat/completions until stopped."""
    from recranker.llm.backends.factory import make_backend
    from recranker.llm.backends.server import OpenAIServer, describe_bind
    from stages import artifacts, paths

    p = params()
    from recranker.llm.precision import default_device, resolve

    if p.rank.backend != "hf":
        p.rank.backend = "hf"  # the server always runs the model locally
    p.rank.dtype = resolve(p.rank.dtype, default_device(), param="rank.dtype")
    warning = describe_bind(host)
    if warning:
        typer.echo(warning, err=True)
    backend = make_backend(p.rank, paths.base_model(), artifacts.tuned_dir(p.rank.model), seed=p.seed,
                           progress=False)
    try:
        server = OpenAIServer(backend, host=host, port=port, model_name=p.rank.openai.model,
                              api_key=os.environ.get(p.rank.openai.api_key_env) or None,
                              queue_size=queue, timeout=timeout, max_tokens=max_tokens)
        typer.echo(f"serving {p.rank.openai.model} ({p.rank.model}, {p.rank.dtype}) at {server.url}")
        try:
            n = server.serve(max_requests=max_requests or None, idle_timeout=idle_timeout or None)
        except KeyboardInterrupt:
            n = server.handled
    finally:
        backend.close()
    typer.echo(f"served {n} request(s)")
