"""An OpenAI-compatible HTTP server over the `hf` backend (`recranker serve`).

Endpoints (the subset the `openai` backend and common clients use):

* ``GET  /v1/models``
* ``POST /v1/completions``: ``prompt`` (string or list), ``max_tokens``, ``temperature``,
  ``top_p``, ``top_k``, ``seed``, ``logprobs`` (top-k per position), ``echo`` (with
  ``max_tokens: 0`` and ``logprobs``: the log-probability of every prompt token, which is how
  clients score a fixed answer);
* ``POST /v1/chat/completions``: ``messages``, ``max_tokens``, ``temperature``, ``top_p``,
  ``top_k``, ``seed``, ``logprobs`` + ``top_logprobs`` (for the first generated token).

Built like vLLM's OpenAI server: a FastAPI app (pydantic request schemas: every bad value is a
400 naming the field) under uvicorn (asyncio: a slow or idle client holds its own connection
only, and uvicorn closes idle ones). The model is not shared between threads, so requests run
one at a time on a single model thread, behind a bounded queue: when it is full the answer is
503 with ``Retry-After``, never a dropped connection (so is the answer beyond the connection
limit, which uvicorn would give without one). ``max_tokens`` plus the prompt must fit the model's
context. No single request can stall the others: a prompt is refused by its length in
characters before it is tokenised (at most ``CHARS_PER_TOKEN`` per token of context), and
tokenising runs in worker threads, one prompt at a time, never on the event loop. A request for
another model than the served one is a 404, as in the OpenAI API. The serving loop is bounded by ``max_requests`` / ``idle_timeout`` or
:meth:`OpenAIServer.stop`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Prompt, Sampling
from recranker.llm.scoring import ScoreRequest

MAX_BODY = 16 * 1024 * 1024
MAX_TOP_LOGPROBS = 20
RETRY_AFTER = 1  # seconds, in every 503
MAX_PROMPTS = 256  # prompts in one /v1/completions request
# A prompt longer than this many characters per token of the model's context cannot be one that
# fits (English runs at ~4 characters per token): refused before the tokenizer sees it.
CHARS_PER_TOKEN = 8
MAX_PROMPT_CHARS = 1 << 20  # when the model does not say its context


class BadRequest(Exception):
    pass


class UnknownModel(Exception):
    pass


# ---------------------------------------------------------------------------- request schemas
class _Sampling(BaseModel):
    """Fields shared by both endpoints; unknown OpenAI fields (user, stop, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr | None = None
    max_tokens: StrictInt | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: StrictInt = Field(0, ge=-1)  # vLLM's extension; 0 or -1: off
    seed: StrictInt | None = Field(None, ge=0, lt=2**63)
    n: Literal[1] = 1
    stream: Literal[False] = False


class CompletionRequest(_Sampling):
    prompt: StrictStr | list[StrictStr]
    logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: StrictBool = False

    @field_validator("prompt")
    @classmethod
    def _count(cls, prompt):
        # checked here rather than as a list bound: pydantic would report the str branch first
        if isinstance(prompt, list) and not 1 <= len(prompt) <= MAX_PROMPTS:
            raise ValueError(f"{len(prompt)} prompts; this server takes 1 to {MAX_PROMPTS} per request")
        return prompt


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: StrictStr


class ChatRequest(_Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


# ---------------------------------------------------------------------------- the model side
class CompletionService:
    """Turns validated OpenAI request bodies into `hf` backend calls (no HTTP here: testable directly)."""

    def __init__(self, backend, model_name: str = "recranker", max_tokens: int | None = None):
        self.backend = backend
        self.tok = backend.tokenizer
        self.model_name = model_name
        self.max_tokens = max_tokens  # the server's own cap: one request may not hold the model for minutes
        config = getattr(getattr(backend, "model", None), "config", None)
        self.context = int(getattr(config, "max_position_embeddings", 0) or 0) or None
        self.max_prompt_chars = CHARS_PER_TOKEN * self.context if self.context else MAX_PROMPT_CHARS

    # -- helpers --------------------------------------------------------------------------

    def _piece(self, token_id: int) -> str:
        return self.tok.decode([int(token_id)])

    def _sampling(self, body: dict, default_max: int) -> Sampling:
        max_tokens = body.get("max_tokens")
        return Sampling(
            temperature=float(body.get("temperature", 1.0)),
            top_k=max(0, int(body.get("top_k") or 0)),
            top_p=float(body.get("top_p", 1.0)),
            max_new_tokens=default_max if max_tokens is None else int(max_tokens),
            seed=int(body.get("seed") or 0),
        )

    def _fit(self, n_prompt: int, sampling: Sampling, where: str = "prompt") -> Sampling:
        """The request must fit the model's context (prompt tokens + max_tokens) and the server's cap."""
        if self.max_tokens is not None and sampling.max_new_tokens > self.max_tokens:
            raise BadRequest(f"max_tokens: {sampling.max_new_tokens} is above this server's limit of "
                             f"{self.max_tokens} (recranker serve --max-tokens)")
        if self.context is None:
            return sampling
        if n_prompt >= self.context:
            raise BadRequest(f"{where}: {n_prompt} tokens; the model's context is {self.context}")
        room = self.context - n_prompt
        if sampling.max_new_tokens > room:
            raise BadRequest(f"max_tokens: {sampling.max_new_tokens} + {n_prompt} prompt tokens exceed the "
                             f"model's context of {self.context} (at most {room})")
        return sampling

    def check_size(self, body: dict) -> None:
        """Refuse a request by the model it names and by its length in characters: cheap, so it runs
        on the event loop before any tokenising."""
        if body.get("model") is not None and body["model"] != self.model_name:
            raise UnknownModel(f"The model '{body['model'][:100]}' does not exist (this server serves "
                               f"'{self.model_name}')")
        if "prompt" in body:
            prompts = [body["prompt"]] if isinstance(body["prompt"], str) else body["prompt"]
            where = [f"prompt[{k}]" for k in range(len(prompts))] if len(prompts) > 1 else ["prompt"]
        else:
            prompts, where = ["".join(m["content"] for m in body["messages"])], ["messages"]
        for text, name in zip(prompts, where, strict=True):
            if len(text) > self.max_prompt_chars:
                raise BadRequest(f"{name}: {len(text)} characters; this server takes at most "
                                 f"{self.max_prompt_chars} per prompt ({CHARS_PER_TOKEN} per token of the "
                                 f"model's context)" if self.context else f"{name}: {len(text)} characters; "
                                 f"this server takes at most {self.max_prompt_chars} per prompt")

    def _generate_ids(self, ids: list[int], sampling: Sampling) -> str:
        if sampling.max_new_tokens <= 0:
            return ""
        return self.backend.generate_ids([ids], sampling)[0]

    # -- endpoints ------------------------------------------------------------------------

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "recranker"}]}

    def check_completions(self, body: dict) -> list[tuple[str, list[int], list[int], Sampling]]:
        """Tokenise and bound every prompt before the request takes its place in the queue."""
        prompts = body["prompt"]
        prompts = [prompts] if isinstance(prompts, str) else prompts
        sampling = self._sampling(body, 16)
        out = []
        for k, text in enumerate(prompts):
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = list(enc["input_ids"]), [int(a) for a, _ in enc["offset_mapping"]]
            if not ids:
                raise BadRequest(f"prompt: prompt {k} is empty")
            out.append((text, ids, offsets, self._fit(len(ids), sampling, f"prompt[{k}]")))
        return out

    def completions(self, body: dict, checked=None) -> dict:
        n_top = body.get("logprobs")
        echo = bool(body.get("echo", False))
        choices = []
        for k, (text, ids, offsets, sampling) in enumerate(checked or self.check_completions(body)):
            logprobs = None
            if n_top is not None:
                logprobs = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
                if echo and len(ids) > 1:
                    res = self.backend.scorer.score([ScoreRequest(tuple(ids), (), len(ids) - 1)])[0]
                    logprobs["tokens"] = [self._piece(t) for t in ids]
                    logprobs["token_logprobs"] = [None] + [float(x) for x in res.token_logprobs]
                    logprobs["top_logprobs"] = [None] * len(ids)
                    logprobs["text_offset"] = offsets
                elif echo:
                    logprobs.update(tokens=[self._piece(ids[0])], token_logprobs=[None],
                                    top_logprobs=[None], text_offset=offsets)
            out_text = ""
            if sampling.max_new_tokens > 0:
                if logprobs is not None and n_top and sampling.max_new_tokens == 1 and sampling.temperature == 0:
                    # The common "score the next token" request: one forward, top-k from it.
                    res = self.backend.scorer.score([ScoreRequest(tuple(ids), top_k=n_top)])[0]
                    best_id, best_lp = res.top[0]
                    out_text = self._piece(best_id)
                    logprobs["tokens"].append(out_text)
                    logprobs["token_logprobs"].append(best_lp)
                    logprobs["top_logprobs"].append({self._piece(t): lp for t, lp in res.top})
                    logprobs["text_offset"].append(len(text))
                else:
                    out_text = self._generate_ids(ids, sampling)
            choices.append({"index": k, "text": (text if echo else "") + out_text, "logprobs": logprobs,
                            "finish_reason": "length"})
        return {"id": f"cmpl-{time.time_ns()}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices}

    def check_chat(self, body: dict) -> tuple[list[int], Sampling]:
        prompt = Prompt.from_messages([{"role": m["role"], "content": m["content"]} for m in body["messages"]])
        ids = list(self.backend.encode(prompt))
        return ids, self._fit(len(ids), self._sampling(body, 64), "messages")

    def chat(self, body: dict, checked=None) -> dict:
        ids, sampling = checked or self.check_chat(body)
        logprobs = None
        if body.get("logprobs"):
            n_top = int(body.get("top_logprobs") or 0)
            res = self.backend.scorer.score([ScoreRequest(tuple(ids), top_k=max(n_top, 1))])[0]
            first_id, first_lp = res.top[0]
            logprobs = {"content": [{
                "token": self._piece(first_id), "logprob": first_lp,
                "top_logprobs": [{"token": self._piece(t), "logprob": lp} for t, lp in res.top[:n_top]],
            }]}
        if logprobs is not None and sampling.max_new_tokens == 1 and sampling.temperature == 0:
            text = logprobs["content"][0]["token"]
        else:
            text = self._generate_ids(ids, sampling)
        return {"id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": logprobs, "finish_reason": "length"}]}


# ---------------------------------------------------------------------------- HTTP
def _error(code: int, msg: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
            413: "invalid_request_error", 503: "server_busy"}.get(code, "error")
    error = {"message": msg, "type": kind, "code": code}
    if code == 404:  # as the OpenAI API answers an unknown model
        error.update(param="model", code="model_not_found")
    if code == 503:  # every overload answer says when to come back
        headers = {"Retry-After": str(RETRY_AFTER), **(headers or {})}
    return JSONResponse({"error": error}, status_code=code, headers=headers)


def _field(err: dict) -> str:
    loc = [str(x) for x in err.get("loc", ()) if x != "body"]
    # pydantic names the union branch ("str", "list[str]"): the user's field is what comes before
    loc = [x for x in loc if not (x.startswith(("list[", "function-")) or x in ("str", "int", "float", "bool"))]
    return ".".join(loc) or "body"


class ModelQueue:
    """One model thread; at most ``size`` requests waiting or running, the rest get 503."""

    def __init__(self, size: int):
        self.size = size
        self.pending = 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def run(self, fn, *args):
        loop = asyncio.get_running_loop()
        self.pending += 1  # the event loop is single-threaded: no lock needed
        try:
            return await loop.run_in_executor(self.pool, fn, *args)
        finally:
            self.pending -= 1

    @property
    def full(self) -> bool:
        return self.pending >= self.size


def build_app(service: CompletionService, *, api_key: str | None = None, queue_size: int = 16,
              retry_after: int = 1, counter: list | None = None):
    """The FastAPI app: schemas, key check, bounded model queue. ``counter[0]`` counts answers."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="recranker", openapi_url=None, docs_url=None, redoc_url=None)
    queue = ModelQueue(queue_size)
    app.state.queue = queue
    counter = counter if counter is not None else [0]
    key = api_key.encode() if api_key else None

    @app.middleware("http")
    async def guard(request: Request, call_next):
        try:
            if key is not None:
                got = request.headers.get("authorization", "").encode("latin-1", "replace")
                if not secrets.compare_digest(got, b"Bearer " + key):
                    return _error(401, "invalid API key")
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return _error(400 if not length.isdigit() else 413,
                              f"Content-Length: {length[:40]!r} is not a size up to {MAX_BODY} bytes")
            return await call_next(request)
        finally:
            counter[0] += 1

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        msg = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            return _error(400, f"body: invalid JSON ({first.get('ctx', {}).get('error', msg)})")
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        return _error(400, f"{_field(first)}: {msg}{more}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crash(request, exc):  # a server answers, it does not drop the connection
        return _error(500, f"{type(exc).__name__}: {exc}")

    async def _queued(fn, *args):
        if queue.full:
            return _error(503, f"busy: {queue.pending} requests queued for the model; retry later",
                          headers={"Retry-After": str(retry_after)})
        try:
            return await queue.run(fn, *args)
        except (BadRequest, RecrankerError) as exc:
            return _error(400, str(exc))

    @app.get("/v1/models")
    async def models():
        return service.models()

    async def _checked(check, body):
        """404/400s before the queue: sizes on the loop (cheap), tokenising in a worker thread."""
        try:
            service.check_size(body)
            return await asyncio.to_thread(check, body)
        except UnknownModel as exc:
            return _error(404, str(exc))
        except (BadRequest, RecrankerError) as exc:
            return _error(400, str(exc))

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        body = req.model_dump()
        checked = await _checked(service.check_completions, body)
        if not isinstance(checked, list):
            return checked  # the error answer
        return await _queued(service.completions, body, checked)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        body = req.model_dump()
        checked = await _checked(service.check_chat, body)
        if not isinstance(checked, tuple):
            return checked
        return await _queued(service.chat, body, checked)

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OpenAIServer:
    """uvicorn + :func:`build_app` on a socket bound at construction (``port=0``: any free port).

    ``timeout`` closes connections idle that long (keep-alive) and bounds how long a client may
    take to send its request body; ``max_connections`` beyond which uvicorn answers 503.
    """

    def __init__(self, backend, host: str = "127.0.0.1", port: int = 8000, model_name: str = "recranker",
                 api_key: str | None = None, *, queue_size: int = 16, timeout: float = 10.0,
                 max_connections: int = 256, max_tokens: int | None = None):
        import uvicorn

        self.service = CompletionService(backend, model_name, max_tokens=max_tokens)
        self._count = [0]
        self.app = build_app(self.service, api_key=api_key, queue_size=queue_size, counter=self._count)
        self.app.add_middleware(_BodyTimeout, timeout=timeout)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise RecrankerError(f"serve: cannot bind {host}:{port} ({exc.strerror})") from None
        self.sock.listen(1024)  # a burst waits in the backlog, it is not reset
        self.config = uvicorn.Config(self.app, http=_timed_h11(), log_level="warning", access_log=False,
                                     lifespan="off",
                                     timeout_keep_alive=max(1, int(timeout)),
                                     limit_concurrency=max_connections, backlog=1024,
                                     h11_max_incomplete_event_size=64 * 1024)
        self.server = uvicorn.Server(self.config)
        self._stop = threading.Event()

    @property
    def handled(self) -> int:
        return self._count[0]

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/v1"

    async def _watch(self, max_requests, idle_timeout, poll):
        last, seen = time.monotonic(), 0
        while not self.server.should_exit:
            if self._stop.is_set() or (max_requests is not None and self.handled >= max_requests):
                break
            if self.handled != seen:
                seen, last = self.handled, time.monotonic()
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                break
            await asyncio.sleep(poll)
        self.server.should_exit = True

    async def _main(self, max_requests, idle_timeout, poll):
        watcher = asyncio.create_task(self._watch(max_requests, idle_timeout, poll))
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            watcher.cancel()

    def serve(self, max_requests: int | None = None, idle_timeout: float | None = None,
              poll: float = 0.1) -> int:
        """Handle requests until :meth:`stop`, ``max_requests`` answered, or ``idle_timeout``
        seconds without a request; closes the socket and returns the number answered."""
        try:
            asyncio.run(self._main(max_requests, idle_timeout, poll))
        finally:
            self.sock.close()
            self.app.state.queue.pool.shutdown(wait=True, cancel_futures=True)
        return self.handled

    def stop(self) -> None:
        self._stop.set()
        self.server.should_exit = True

    def start_thread(self, **kwargs) -> threading.Thread:
        """Serve from a daemon thread (tests); stop with :meth:`stop` (or the bounds)."""
        t = threading.Thread(target=self.serve, kwargs=kwargs, daemon=True)
        t.start()
        return t


class _BodyTimeout:
    """ASGI middleware: the request body is read here, within ``timeout`` seconds, before the
    app sees the request; a client that takes longer gets a 408 and the connection is closed
    (uvicorn itself only times out idle keep-alive connections)."""

    def __init__(self, app, timeout: float):
        self.app, self.timeout = app, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                return await self._reply(send, 408, "request body not received in time")
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY:
                return await self._reply(send, 413, f"body larger than {MAX_BODY} bytes")
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as uvicorn would

        return await self.app(scope, replay, send)

    @staticmethod
    async def _reply(send, status: int, message: str) -> None:
        payload = json.dumps({"error": {"message": message, "type": "timeout", "code": status}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


async def _overloaded(send, limit: int) -> None:
    payload = json.dumps({"error": {"message": f"busy: more than {limit} open connections; retry later", "type": "server_busy", "code": 503}}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", str(RETRY_AFTER).encode()),
                            (b"connection", b"close"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def _timed_h11():
    """uvicorn's h11 protocol with a deadline for each request head: uvicorn times out idle
    keep-alive connections only, so a client that connects and sends nothing (or a header a
    byte at a time) would hold a connection slot for good."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        _deadline = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # uvicorn's own answer beyond limit_concurrency is a bare 503 without Retry-After:
            # take the limit over (same count: open connections and running requests) and answer
            # it like every other overload.
            limit, self.limit_concurrency = self.limit_concurrency, None
            if limit is not None:
                inner = self.app

                async def limited(scope, receive, send):
                    if scope["type"] == "http" and (len(self.connections) > limit or len(self.tasks) > limit):
                        return await _overloaded(send, limit)
                    return await inner(scope, receive, send)

                self.app = limited

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _expire(self) -> None:
            self._deadline = None
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._deadline = self.loop.call_later(self.timeout_keep_alive, self._expire)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._between_requests():
                if self._deadline is None:  # a new head has started: it gets one period, not one per byte
                    self._deadline = self.loop.call_later(self.timeout_keep_alive, self._expire)
            elif self._deadline is not None:  # a request is being handled: never cut by this timer
                self._deadline.cancel()
                self._deadline = None

        def connection_lost(self, exc) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

    return TimedH11Protocol


def describe_bind(host: str) -> str | None:
    """A one-line warning when ``host`` is reachable from other machines."""
    if is_loopback(host):
        return None
    return (f"warning: serving on {host}, reachable from other machines over plain http; "
            "set the API key variable and prefer 127.0.0.1 behind a TLS proxy")
