"""SIGTERM to a real `python -m service` process: readiness off at once, requests still served during the
drain, then the listener closes while requests in flight complete and the process exits. In flight: a
client still uploading its body (real, and as slow as the test wants), and an SSE stream of explanations
written by the tiny Llama that runs on past the listener's close."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts import procs
from tests.service.sse import parse_sse

ROOT = Path(__file__).resolve().parents[2]
BODY = json.dumps({"history": ["1001", "1002", "1003"], "k": 5}).encode()
DRAIN_S = 1.5


def _start(bundle_dir: Path, tmp_path: Path, **extra: str) -> Iterator[tuple[subprocess.Popen[bytes], str, int]]:
    env = {"SEQREC_SHUTDOWN_DRAIN_S": str(DRAIN_S), "SEQREC_SHUTDOWN_GRACE_S": "20", "SEQREC_BUNDLE_WATCH_S": "0",
           **extra}  # fmt: skip
    with procs.service(env, bundle_dir, main=True, timeout_s=90, log=tmp_path / "server.log") as running:
        yield running.proc, running.url, int(running.url.rsplit(":", 1)[1])


@pytest.fixture
def server(bundle_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, int]]:
    yield from _start(bundle_dir, tmp_path)


@pytest.fixture
def llm_server(bundle_dir: Path, tmp_path: Path, tiny_llm_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, int]]:
    """With the tiny Llama writing long explanations (SSE streams that last seconds)."""
    yield from _start(bundle_dir, tmp_path, SEQREC_LLM_BACKEND="transformers", SEQREC_LLM_MODEL=str(tiny_llm_dir),
                      SEQREC_LLM_DTYPE="float32", SEQREC_EXPLAIN_MAX_NEW_TOKENS="400",
                      SEQREC_EXPLAIN_DEADLINE_MS="60000")  # fmt: skip


def test_sigterm_drains_then_finishes_the_request_in_flight(server: tuple[subprocess.Popen[bytes], str, int]) -> None:
    proc, url, port = server
    slow = socket.create_connection(("127.0.0.1", port))
    head = f"POST /v1/recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(BODY)}\r\n\r\n"
    slow.sendall(head.encode() + BODY[:10])  # in flight: the rest of the body comes after the drain

    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = httpx.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["draining"] is True
    assert ready.json()["components"]["server"]["detail"].startswith("draining")
    during = httpx.post(f"{url}/v1/recommend", content=BODY, headers={"content-type": "application/json"}, timeout=5)
    assert during.status_code == 200  # still serving while load balancers notice

    time.sleep(DRAIN_S + 0.7)  # drain over: the listener is closed, the in-flight request keeps the process up
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=2)
    assert proc.poll() is None

    slow.sendall(BODY[10:])
    slow.settimeout(10)
    reply = b""
    while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _length(reply):
        chunk = slow.recv(65536)
        assert chunk, reply
        reply += chunk
    slow.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["bundle_id"] == "test-meanpool-0000"
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown


def test_an_sse_stream_in_flight_at_sigterm_runs_to_its_end(llm_server: tuple[subprocess.Popen[bytes], str, int]) -> None:
    proc, url, port = llm_server
    body = {"history": ["1001", "1002", "1003"], "k": 3}
    lines: list[str] = []
    t_signal = t_end = 0.0
    refused_while_streaming = False
    with httpx.stream("POST", f"{url}/v1/recommend/stream", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            lines.append(line)
            if not t_signal and line.startswith("event: explanation_delta"):
                proc.send_signal(signal.SIGTERM)  # mid-generation
                t_signal = time.monotonic()
            if t_signal and not refused_while_streaming and time.monotonic() > t_signal + DRAIN_S + 0.5:
                try:  # the listener must be closed by now, with this stream still running
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    refused_while_streaming = True
        t_end = time.monotonic()
    events = parse_sse(lines)
    assert t_signal and events[-1] == ("explanations_done", {"status": "ok"}), events[-3:]
    assert refused_while_streaming, f"the stream ended {t_end - t_signal:.1f} s after SIGTERM, before the close"
    assert sum(name == "explanation" for name, _ in events) == 3
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)


def _length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30
