"""A minimal OpenAI-compatible HTTP server over the `hf` backend (`recranker serve`).

Endpoints (the subset the `openai` backend and common clients use):

* ``GET  /v1/models``
* ``POST /v1/completions``: ``prompt`` (string or list), ``max_tokens``, ``temperature``,
  ``top_p``, ``top_k``, ``seed``, ``logprobs`` (top-k per position), ``echo`` (with
  ``max_tokens: 0`` and ``logprobs``: the log-probability of every prompt token, which is how
  clients score a fixed answer);
* ``POST /v1/chat/completions``: ``messages``, ``max_tokens``, ``temperature``, ``top_p``,
  ``top_k``, ``seed``, ``logprobs`` + ``top_logprobs`` (for the first generated token).

stdlib ``http.server``, one request at a time (the model is not shared between threads). The
serving loop is bounded: it returns after ``max_requests`` requests or ``idle_timeout`` seconds
without one, or when :meth:`OpenAIServer.stop` is called.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Prompt, Sampling
from recranker.llm.scoring import ScoreRequest

MAX_BODY = 16 * 1024 * 1024


class BadRequest(Exception):
    pass


class CompletionService:
    """Turns OpenAI request bodies into `hf` backend calls (no HTTP here: testable directly)."""

    def __init__(self, backend, model_name: str = "recranker"):
        self.backend = backend
        self.tok = backend.tokenizer
        self.model_name = model_name

    # -- helpers --------------------------------------------------------------------------

    def _piece(self, token_id: int) -> str:
        return self.tok.decode([int(token_id)])

    def _sampling(self, body: dict, default_max: int) -> Sampling:
        try:
            return Sampling(
                temperature=float(body.get("temperature", 1.0)),
                top_k=int(body.get("top_k", 0) or 0),
                top_p=float(body.get("top_p", 1.0)),
                max_new_tokens=int(body.get("max_tokens", default_max) or 0),
                seed=int(body.get("seed", 0) or 0),
            )
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"bad sampling parameter: {exc}") from None

    def _generate_ids(self, ids: list[int], sampling: Sampling) -> str:
        if sampling.max_new_tokens <= 0:
            return ""
        return self.backend.generate_ids([ids], sampling)[0]

    # -- endpoints ------------------------------------------------------------------------

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "recranker"}]}

    def completions(self, body: dict) -> dict:
        prompts = body.get("prompt")
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("prompt must be a string or a non-empty list of strings")
        n_top = body.get("logprobs")
        n_top = None if n_top is None else int(n_top)
        echo = bool(body.get("echo", False))
        sampling = self._sampling(body, 16)
        choices = []
        for k, text in enumerate(prompts):
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = list(enc["input_ids"]), [int(a) for a, _ in enc["offset_mapping"]]
            if not ids:
                raise BadRequest(f"prompt {k} is empty")
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

    def chat(self, body: dict) -> dict:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in msgs
        ):
            raise BadRequest("messages must be a non-empty list of {role, content}")
        prompt = Prompt.from_messages(msgs)
        ids = list(self.backend.encode(prompt))
        sampling = self._sampling(body, 64)
        logprobs = None
        if body.get("logprobs"):
            n_top = int(body.get("top_logprobs", 0) or 0)
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


def _handler(service: CompletionService, lock: threading.Lock, api_key: str | None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet; the stage prints a summary instead
            pass

        def _send(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, msg: str) -> None:
            self._send(code, {"error": {"message": msg, "type": "invalid_request_error", "code": code}})

        def _authorized(self) -> bool:
            if not api_key:
                return True
            if self.headers.get("Authorization", "") == f"Bearer {api_key}":
                return True
            self._error(401, "invalid API key")
            return False

        def do_GET(self):
            if not self._authorized():
                return
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, service.models())
            else:
                self._error(404, f"unknown path {self.path}")

        def do_POST(self):
            if not self._authorized():
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                return self._error(400, "missing or oversized body")
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise BadRequest("body must be a JSON object")
                route = {"/v1/completions": service.completions, "/v1/chat/completions": service.chat}
                fn = route.get(self.path.rstrip("/"))
                if fn is None:
                    return self._error(404, f"unknown path {self.path}")
                with lock:
                    self._send(200, fn(body))
            except (BadRequest, json.JSONDecodeError, RecrankerError) as exc:
                self._error(400, str(exc))
            except Exception as exc:  # noqa: BLE001 - a server must answer, not die
                self._error(500, f"{type(exc).__name__}: {exc}")

    return Handler


class _CountingHTTPServer(HTTPServer):
    handled = 0

    def finish_request(self, request, client_address):
        # Counted before the answer is written: a client that has its answer sees the count.
        self.handled += 1
        super().finish_request(request, client_address)


class OpenAIServer:
    """``HTTPServer`` + :class:`CompletionService`; ``port=0`` picks a free port."""

    def __init__(self, backend, host: str = "127.0.0.1", port: int = 8000, model_name: str = "recranker",
                 api_key: str | None = None):
        self.service = CompletionService(backend, model_name)
        self.httpd = _CountingHTTPServer((host, port), _handler(self.service, threading.Lock(), api_key))
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def serve(self, max_requests: int | None = None, idle_timeout: float | None = None,
              poll: float = 0.2) -> int:
        """Handle requests until :meth:`stop`, ``max_requests`` served, or ``idle_timeout``
        seconds without a request; closes the socket and returns the number served."""
        self.httpd.timeout = poll
        last, seen = time.monotonic(), 0
        try:
            while not self._stop.is_set():
                if max_requests is not None and self.httpd.handled >= max_requests:
                    break
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
                self.httpd.handle_request()
                if self.httpd.handled != seen:
                    seen, last = self.httpd.handled, time.monotonic()
        finally:
            self.httpd.server_close()
        return self.httpd.handled

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self, **kwargs) -> threading.Thread:
        """Serve from a daemon thread (tests); stop with :meth:`stop` (or the bounds)."""
        t = threading.Thread(target=self.serve, kwargs=kwargs, daemon=True)
        t.start()
        return t
