"""The `openai` backend: any OpenAI-compatible endpoint (vLLM, `recranker serve`, hosted APIs).

How each question is asked:

* with a local ``tokenizer`` (its chat template renders the prompt text): ``/v1/completions``
  with ``echo`` + ``logprobs`` + ``max_tokens: 0`` returns the log-probability of every prompt
  token, so ``prompt + label`` gives the exact log-probability of each label (and of any
  continuation) — the same numbers as the `hf` backend;
* without one: ``/v1/chat/completions`` with ``logprobs`` + ``top_logprobs`` (labels outside
  the returned top-k get −inf); if the endpoint offers no log-probabilities, the answer is
  generated and the label read from the text (one-hot).

Stdlib HTTP (urllib); timeouts; retries with exponential backoff on connection errors, 429 and
5xx; the API key is read only from the environment variable ``api_key_env``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Backend, Prompt, Sampling

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer=None,
        api_key_env: str = "RECRANKER_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        top_logprobs: int = 20,
        batch_size: int = 16,
        send_top_k: bool = True,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer = tokenizer
        self.api_key = os.environ.get(api_key_env) or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.top_logprobs = top_logprobs
        self.batch_size = batch_size
        self.send_top_k = send_top_k
        self.requests = 0

    # -- HTTP ---------------------------------------------------------------------------------

    def _post(self, path: str, body: dict) -> dict:
        url = f"{self.base_url}{path}"
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last, wait = "", 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:  # a server's Retry-After (busy: 503/429) over our own backoff
                time.sleep(min(wait or self.backoff * 2 ** (attempt - 1), 30.0))
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    self.requests += 1
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace").replace("\n", " ")
                last = f"HTTP {exc.code}: {detail}"
                retry_after = (exc.headers or {}).get("Retry-After", "")
                wait = float(retry_after) if retry_after.strip().isdigit() else 0.0
                if exc.code not in RETRY_STATUS:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        raise RecrankerError(f"rank.openai: {url}: {last} (after {attempt + 1} attempt(s))")

    def _render(self, prompt: Prompt) -> str:
        return self.tokenizer.apply_chat_template(prompt.as_dicts(), add_generation_prompt=True, tokenize=False)

    def _sampling_body(self, sampling: Sampling) -> dict:
        body = {"temperature": sampling.temperature, "top_p": sampling.top_p,
                "max_tokens": sampling.max_new_tokens, "seed": sampling.seed}
        if self.send_top_k and sampling.top_k:
            body["top_k"] = sampling.top_k  # vLLM / recranker serve extension
        return body

    # -- scoring ------------------------------------------------------------------------------

    def _echo_logprobs(self, texts: Sequence[str], starts: Sequence[int]) -> list[float]:
        """Summed log-probability of the tokens of ``texts[i]`` from character ``starts[i]`` on."""
        out: list[float] = []
        for s in range(0, len(texts), self.batch_size):
            chunk = list(texts[s : s + self.batch_size])
            resp = self._post("/completions", {"model": self.model, "prompt": chunk, "echo": True,
                                               "max_tokens": 0, "logprobs": 0, "temperature": 0})
            choices = sorted(resp.get("choices", []), key=lambda c: c.get("index", 0))
            if len(choices) != len(chunk):
                raise RecrankerError(f"rank.openai: {len(choices)} choices for {len(chunk)} prompts")
            for k, ch in enumerate(choices):
                lp = ch.get("logprobs") or {}
                offs, tlp = lp.get("text_offset"), lp.get("token_logprobs")
                if not offs or not tlp:
                    raise RecrankerError("rank.openai: the endpoint returned no prompt log-probs for echo")
                start = starts[s + k]
                out.append(float(sum(v for o, v in zip(offs, tlp) if o >= start and v is not None)))
        return out

    def continuation_logprobs(self, prompts, continuations) -> list[np.ndarray]:
        if self.tokenizer is None:
            raise RecrankerError("rank.openai: scoring continuations needs the model's tokenizer locally")
        texts, starts, shape = [], [], []
        for p, conts in zip(prompts, continuations):
            base = self._render(p)
            shape.append(len(conts))
            for c in conts:
                texts.append(base + c)
                starts.append(len(base))
        flat = self._echo_logprobs(texts, starts)
        out, k = [], 0
        for n in shape:
            out.append(np.array(flat[k : k + n]))
            k += n
        return out

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Sequence[str]) -> np.ndarray:
        if not prompts:
            return np.zeros((0, len(labels)))
        if self.tokenizer is not None:
            rows = self.continuation_logprobs(prompts, [list(labels)] * len(prompts))
            return np.stack(rows)
        return np.stack([self._chat_label_row(p, labels) for p in prompts])

    def _chat_label_row(self, prompt: Prompt, labels: Sequence[str]) -> np.ndarray:
        body = {"model": self.model, "messages": prompt.as_dicts(), "max_tokens": 1, "temperature": 0,
                "logprobs": True, "top_logprobs": self.top_logprobs}
        resp = self._post("/chat/completions", body)
        choice = (resp.get("choices") or [{}])[0]
        content = ((choice.get("logprobs") or {}).get("content") or [])
        row = np.full(len(labels), -np.inf)
        if content:
            top = {t["token"]: float(t["logprob"]) for t in content[0].get("top_logprobs", [])}
            for j, lab in enumerate(labels):
                cands = [v for tok, v in top.items() if tok == lab or tok.strip() == lab]
                if cands:
                    row[j] = max(cands)
        else:  # no log-probs offered: generate and read the label from the text
            text = (choice.get("message") or {}).get("content") or ""
            if not text:
                text = self.generate([prompt], Sampling(temperature=0.0, max_new_tokens=8))[0]
            word = text.strip().split(maxsplit=1)[0].strip(".,:;!") if text.strip() else ""
            for j, lab in enumerate(labels):
                if word.casefold() == str(lab).casefold():
                    row[j] = 0.0
        if not np.isfinite(row).any():
            row[:] = 0.0  # nothing recognisable: uniform, i.e. no information
        return row

    # -- generation ---------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
        out: list[str] = []
        if self.tokenizer is not None:
            texts = [self._render(p) for p in prompts]
            for s in range(0, len(texts), self.batch_size):
                chunk = texts[s : s + self.batch_size]
                resp = self._post("/completions", {"model": self.model, "prompt": chunk,
                                                   **self._sampling_body(sampling)})
                choices = sorted(resp.get("choices", []), key=lambda c: c.get("index", 0))
                out += [c.get("text", "") for c in choices]
            return out
        for p in prompts:
            resp = self._post("/chat/completions", {"model": self.model, "messages": p.as_dicts(),
                                                    **self._sampling_body(sampling)})
            out.append(((resp.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
        return out
