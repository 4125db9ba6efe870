"""Backends agree: `hf` in-process vs `openai` over a real HTTP server (`recranker serve`'s)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recranker.errors import RecrankerError
from recranker.llm.backends.base import Prompt, Sampling
from recranker.llm.backends.hf import HFBackend
from recranker.llm.backends.openai import OpenAIBackend
from recranker.llm.backends.server import OpenAIServer
from recranker.llm.scoring import encode_chat


@pytest.fixture(scope="module")
def hf(tok):
    from recranker.llm.model import tiny_random_model

    torch.set_num_threads(1)
    model = tiny_random_model(tok, seed=1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(6.0)
    return HFBackend(model, tok, batch_size=4, min_prefix=4)


@pytest.fixture(scope="module")
def server(hf):
    srv = OpenAIServer(hf, port=0, model_name="tiny")
    thread = srv.start_thread(idle_timeout=120)  # stops by itself if a test hangs
    yield srv
    srv.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def prompts(n_users=2, n=3):
    out = []
    for u in range(n_users):
        for c in range(n):
            out.append(Prompt.from_messages(
                [{"role": "system", "content": "You rate movies."},
                 {"role": "user", "content": f"User {u} liked Heat and Fargo.\nRate movie #{c} (199{c}). "
                                             "Answer 1-5."}], group=u))
    return out


def test_encode_many_equals_chat_template(tok, hf):
    ps = prompts()
    assert hf.encode_many(ps) == [tuple(encode_chat(tok, p.as_dicts())) for p in ps]


def test_label_logprobs_hf_vs_openai_over_serve(tok, hf, server):
    client = OpenAIBackend(server.url, "tiny", tokenizer=tok, batch_size=3)
    ps = prompts()
    for labels in (["1", "2", "3", "4", "5"], ["Yes", "No"], list("ABCDEFGHIJ")):
        a = hf.label_logprobs(ps, labels)
        b = client.label_logprobs(ps, labels)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    # Several label sets at once (the base class's grouping vs hf's single call).
    sets = [["1", "2"], ["Yes", "No"], ["1", "2"], ["A", "B", "C"], ["Yes", "No"], ["A", "B", "C"]]
    for x, y in zip(hf.label_logprobs_multi(ps, sets), client.label_logprobs_multi(ps, sets)):
        np.testing.assert_allclose(x, y, atol=1e-4, rtol=0)


def test_continuations_and_greedy_generation_agree(tok, hf, server):
    client = OpenAIBackend(server.url, "tiny", tokenizer=tok)
    ps = prompts(1, 2)
    conts = [["Heat (1995)", "B. Fargo"], ["C"]]
    for x, y in zip(hf.continuation_logprobs(ps, conts), client.continuation_logprobs(ps, conts)):
        np.testing.assert_allclose(x, y, atol=1e-4, rtol=0)
    greedy = Sampling(temperature=0.0, max_new_tokens=6)
    assert hf.generate(ps, greedy) == client.generate(ps, greedy)


def test_chat_top_logprobs_path(tok, hf, server):
    """Without a local tokenizer the client reads the labels from the chat top-k log-probs."""
    p = prompts(1, 1)
    ids = hf.encode(p[0])
    with torch.no_grad():
        lp = torch.log_softmax(hf.model(torch.tensor([list(ids)])).logits[0, -1].float(), -1)
    top = torch.topk(lp, 3).indices.tolist()
    labels = [tok.decode([t]) for t in top] + ["no-such-label-xyz"]
    row = OpenAIBackend(server.url, "tiny", top_logprobs=5).label_logprobs(p, labels)[0]
    np.testing.assert_allclose(row[:3], lp[top].numpy(), atol=1e-4)
    assert row[3] == -np.inf


class _Flaky(BaseHTTPRequestHandler):
    """Fails twice with 503, then answers; counts the calls."""

    calls = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        seen_key = self.headers.get("Authorization")
        code = 503 if type(self).calls <= 2 else 200
        body = json.dumps({"choices": [{"index": 0, "message": {"content": f"Yes {seen_key}"}}]}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_retries_backoff_and_api_key_from_env(monkeypatch):
    monkeypatch.setenv("RECRANKER_TEST_KEY", "sk-test")
    httpd = HTTPServer(("127.0.0.1", 0), _Flaky)
    t = threading.Thread(target=lambda: [httpd.handle_request() for _ in range(3)], daemon=True)
    t.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    client = OpenAIBackend(url, "m", api_key_env="RECRANKER_TEST_KEY", max_retries=3, backoff=0.01, timeout=5)
    out = client.generate([Prompt.from_messages([{"role": "user", "content": "hi"}])], Sampling())
    t.join(timeout=5)
    httpd.server_close()
    assert _Flaky.calls == 3 and out == ["Yes Bearer sk-test"]


def test_unreachable_endpoint_is_one_line_error():
    with HTTPServer(("127.0.0.1", 0), _Flaky) as h:
        port = h.server_address[1]  # closed again: nothing listens there
    client = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(RecrankerError, match=r"after 2 attempt") as exc:
        client.generate([Prompt.from_messages([{"role": "user", "content": "hi"}])], Sampling())
    assert "\n" not in str(exc.value)


def test_server_rejects_bad_requests_without_retrying(tok, server):
    client = OpenAIBackend(server.url, "tiny", tokenizer=tok, max_retries=3, backoff=5.0)
    before = server.handled
    with pytest.raises(RecrankerError, match="HTTP 400"):
        client._post("/chat/completions", {"messages": "not a list"})
    assert server.handled == before + 1  # 4xx: no retry (backoff 5 s would show)


def test_server_stops_after_max_requests(hf, tok):
    srv = OpenAIServer(hf, port=0)
    t = srv.start_thread(max_requests=2, idle_timeout=60)
    client = OpenAIBackend(srv.url, "recranker", tokenizer=tok, max_retries=0)
    client.label_logprobs(prompts(1, 1), ["1", "2"])
    client.label_logprobs(prompts(1, 1), ["1", "2"])
    t.join(timeout=10)
    assert not t.is_alive() and srv.handled == 2


def test_multi_token_labels_are_scored_as_complete_answers(tok, hf):
    p = prompts(1, 1)
    row = hf.label_logprobs(p, ["9", "10"])[0]  # "10" is two tokens
    end = tok.decode([hf.end_token_id()])
    want = hf.continuation_logprobs(p, [["9" + end, "10" + end]])[0]
    np.testing.assert_allclose(row, want, atol=1e-6)


def test_worker_processes_score_like_one_process(tiny_base):
    """rank.workers: the sharded scorer returns the same answers, in order, for grouped and
    ungrouped prompts, and counts the same computed tokens."""
    ps = prompts(n_users=5, n=3) + [Prompt.from_messages([{"role": "user", "content": "Rate Heat. Answer 1-5."}])]
    labels = ["1", "2", "3", "4", "5"]
    one = HFBackend.from_dirs(tiny_base, batch_size=4, min_prefix=4)
    with HFBackend.from_dirs(tiny_base, batch_size=4, min_prefix=4, workers=2, threads=1,
                             devices=["cpu", "cpu"]) as two:
        two.scorer.chunk_groups = 2  # several chunks per worker
        got = two.label_logprobs(ps, labels)
        assert two.scorer._pool is not None  # really scored in worker processes
        cont = two.continuation_logprobs(ps[:2], [["4", "5"], ["1"]])
    np.testing.assert_allclose(got, one.label_logprobs(ps, labels), atol=1e-5, rtol=0)
    for a, b in zip(cont, one.continuation_logprobs(ps[:2], [["4", "5"], ["1"]])):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert two.scorer.stats.computed_tokens == one.scorer.stats.computed_tokens
    assert two.scorer._pool is None  # closed with the backend


def test_one_scorer_per_gpu_or_per_cpu_thread():
    """rank.workers → (workers, threads each, devices): every visible GPU gets one scorer process
    (rank.workers is ignored there), one GPU scores in-process; CPUs as before."""
    from recranker.llm.backends.factory import scorer_layout

    assert scorer_layout(2, cpu_threads=2, gpus=0) == (2, 1, ["cpu", "cpu"])
    assert scorer_layout(4, cpu_threads=1, gpus=0) == (1, 1, ["cpu"])
    assert scorer_layout(1, cpu_threads=16, gpus=0) == (1, 16, ["cpu"])
    assert scorer_layout(2, cpu_threads=16, gpus=1) == (1, 16, ["cuda:0"])
    assert scorer_layout(2, cpu_threads=16, gpus=8) == (8, 2, [f"cuda:{i}" for i in range(8)])
    assert scorer_layout(1, cpu_threads=4, gpus=8)[1] == 1  # at least one thread each


def test_scorer_builds_inputs_on_the_models_device(tok, tiny_base):
    """load_hf(device=...) puts the model there (bf16 body, fp32 head kept) and the scorer follows
    the model's device; a worker list must name one device per worker."""
    from recranker.llm.backends.hf import load_hf
    from recranker.llm.scoring import PrefixCachedScorer, ShardedScorer

    model, _ = load_hf(tiny_base, None, "bfloat16", device="cpu")
    assert model.get_output_embeddings().weight.dtype == torch.float32
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert PrefixCachedScorer(model).device == torch.device("cpu")
    with pytest.raises(RecrankerError, match="2 scorer workers but 1 devices"):
        ShardedScorer(lambda device: model, workers=2, devices=["cuda:0"])
