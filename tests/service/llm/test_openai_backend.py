"""The openai backend against a real vLLM OpenAI server (conftest.py's session server, the real SmolLM2 with the
bundle's LoRA adapters and soft prompt): label scores equal transformers' fp32 log-likelihoods, constrained
choice, streaming, work aborted on the server at the deadline or when the caller gives up, startup refused by
a server that lacks an adapter, and the app degrading (not failing) when the server goes away mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recbundle import load_manifest
from recbundle.base_model import DEFAULT_MODEL_DIR
from recbundle.rerank import label_token_ids, rank_prompt
from service.llm.openai_backend import OpenAIBackend, RemoteLLMMismatch
from service.llm.remote_server import ServedNames, served_names
from service.main import create_app
from service.settings import Settings
from tests.service.ids import exts
from tests.service.llm.conftest import SPEC, RemoteLLMServer
from tests.service.llm.fixtures import OnItsLoop, label_logprobs

pytestmark = [pytest.mark.slow, pytest.mark.remote_llm]
TITLES = [f"Some Movie Title Number {i} ({1950 + i})" for i in range(60)]


def _names(server: RemoteLLMServer) -> ServedNames:
    manifest = load_manifest(server.bundle)
    return served_names(manifest, ["explain", "rerank"], str(DEFAULT_MODEL_DIR))


class Client(OnItsLoop):
    def __init__(self, server: RemoteLLMServer) -> None:
        super().__init__()
        manifest = load_manifest(server.bundle)
        soft = server.bundle / manifest.llm.soft_prompt if manifest.llm.soft_prompt else None
        self.backend = self.run(OpenAIBackend.connect(server.url, str(DEFAULT_MODEL_DIR), _names(server), soft_prompt=soft))


@pytest.fixture(scope="module")
def client(remote_llm: RemoteLLMServer) -> Iterator[Client]:
    c = Client(remote_llm)
    yield c
    c.close()


def _rank_prompt(b: OpenAIBackend, user: int) -> str:
    history = [(i, TITLES[i]) for i in range(user, user + 10)]
    return rank_prompt(b.tokenizer, history, [(i, TITLES[i]) for i in range(user + 20, user + 40)], SPEC)


@pytest.mark.parametrize(("adapter", "soft"), [("rerank", True), (None, False)])
def test_label_scores_equal_the_transformers_log_likelihoods(
    client: Client, remote_llm: RemoteLLMServer, adapter: str | None, soft: bool
) -> None:
    b = client.backend
    labels = label_token_ids(b.tokenizer, SPEC.labels)
    text = _rank_prompt(b, 0)
    ours = client.run(b.score_labels(text, labels, time.monotonic() + 120, soft_prompt=soft, adapter=adapter))
    tmp = remote_llm.bundle.parent  # the adapters and soft prompt the bundle was built from
    ref = label_logprobs(DEFAULT_MODEL_DIR, tmp / "rerank" if adapter else None, tmp / "soft.npy" if soft else None, text, labels)
    diff = float(np.max(np.abs(np.subtract(ours, ref))))
    print(f"remote vLLM vs transformers fp32 label log-probs ({adapter}, soft={soft}): max abs diff {diff:.2e}")
    assert diff < 2e-4  # the in-process engine's tolerance (test_vllm_backend.py)
    assert list(np.argsort(ours, kind="stable")) == list(np.argsort(ref, kind="stable"))


def test_constrained_choice_and_stream(client: Client) -> None:
    b = client.backend
    candidates = ["Fargo (1996)", "Toy Story (1995)", "Heat (1995)"]
    prompt = b.render("Name a movie.", "Pick a comedy.")
    for soft in (False, True):
        assert client.run(b.choose(prompt, candidates, time.monotonic() + 60, soft_prompt=soft)) in candidates

    async def pieces() -> list[str]:
        return [p async for p in b.stream(prompt, 16, time.monotonic() + 60)]

    parts = client.run(pieces())
    whole = client.run(b.generate([prompt], 16, time.monotonic() + 60))
    assert len(parts) > 3 and "".join(parts).strip() == whole.texts[0] and whole.new_tokens == 16


def _idle_within(server: RemoteLLMServer, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.metric("vllm:num_requests_running") == 0 and server.metric("vllm:num_requests_waiting") == 0:
            return True
        time.sleep(0.1)
    return False


def test_deadline_and_cancellation_abort_the_request_on_the_server(client: Client, remote_llm: RemoteLLMServer) -> None:
    b = client.backend
    prompt = b.render("You are helpful.", "Write a long story about a movie night.")
    start = time.monotonic()
    gen = client.run(b.generate([prompt, prompt], 1500, start + 1.0))
    assert gen.stopped_early and time.monotonic() - start < 2.0
    assert _idle_within(remote_llm, 3.0), "the server kept generating after the deadline"

    async def give_up_early() -> list[str]:
        got = []
        async with contextlib.aclosing(b.stream(prompt, 1500, time.monotonic() + 120)) as pieces:  # type: ignore[type-var]
            async for piece in pieces:
                got.append(piece)
                if len(got) == 3:
                    break  # the caller gives up: closing the generator closes the connection
        return got

    assert len(client.run(give_up_early())) == 3
    assert _idle_within(remote_llm, 3.0), "the server kept generating after the stream was abandoned"

    async def streamed(sink: list[str]) -> None:
        async for piece in b.stream(prompt, 1500, time.monotonic() + 120):
            sink.append(piece)

    async def cancelled() -> None:
        sink: list[str] = []
        tasks = [asyncio.create_task(b.generate([prompt], 1500, time.monotonic() + 120)), asyncio.create_task(streamed(sink))]
        while not sink:  # both requests are running on the server
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    client.run(cancelled())
    assert _idle_within(remote_llm, 3.0), "the server kept generating after the calls were cancelled"


def test_startup_refuses_a_server_lacking_an_adapter(client: Client, remote_llm: RemoteLLMServer) -> None:
    names = _names(remote_llm)
    stale = ServedNames(names.model, {**names.adapters, "rerank": "rerank-00000000"}, names.base)
    with pytest.raises(RemoteLLMMismatch, match=r"does not serve \['rerank-00000000'\].*remote_server --bundle"):
        client.run(OpenAIBackend.connect(remote_llm.url, str(DEFAULT_MODEL_DIR), stale))


class Proxy:
    """A TCP relay in front of the server: `cut()` drops every connection and stops listening, as a server
    that died would look to the service."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.conns: list[socket.socket] = []
        self.listen()

    def listen(self) -> None:
        """Accept on `self.port` (a free one the first time; the same one again after `cut()`)."""
        self.listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the port comes back
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def cut(self) -> None:
        with contextlib.suppress(OSError):  # wakes the blocked accept() and stops listening (Linux)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in self.conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_the_app_degrades_when_the_server_goes_away_and_recovers_when_it_is_back(remote_llm: RemoteLLMServer, tmp_path: Path) -> None:
    proxy = Proxy(remote_llm.port)
    values: dict[str, Any] = {
        "bundle_dir": remote_llm.bundle, "llm_model": str(DEFAULT_MODEL_DIR), "llm_backend": "openai",
        "llm_url": f"http://127.0.0.1:{proxy.port}/v1", "redis_url": None, "explain_max_new_tokens": 8,
        "explain_deadline_ms": 60000, "rerank_deadline_ms": 60000,
    }  # fmt: skip
    with TestClient(create_app(Settings(**values)), raise_server_exceptions=False) as app:
        req = {"history": exts([1, 2, 3]), "k": 3, "explain": True}
        up = app.post("/v1/recommend", json=req).json()
        assert up["rerank_status"] == "ok" and up["explanation_status"] == "ok", up
        proxy.cut()
        down = app.post("/v1/recommend", json={**req, "history": exts([4, 5, 6])})
        assert down.status_code == 200, down.text
        body = down.json()
        assert body["rerank_status"] == "error" and body["explanation_status"] in ("unavailable", "timeout"), body
        assert len(body["items"]) == 3
        metrics = app.get("/metrics").text
        assert 'seqrec_llm_remote_errors_total{reason="unreachable"}' in metrics
        assert 'seqrec_llm_remote_errors_total{reason="unreachable"} 0.0' not in metrics
        proxy.listen()  # the server is back at the same address: new calls open new connections to it
        back = app.post("/v1/recommend", json={**req, "history": exts([7, 8, 9])}).json()
        assert back["rerank_status"] == "ok" and back["explanation_status"] == "ok", back
