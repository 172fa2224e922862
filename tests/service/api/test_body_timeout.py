"""A request body must arrive within SEQREC_BODY_TIMEOUT_S of its headers (service/api/limits.py,
BodyDeadlineMiddleware): a stalled body gets 408 `body_timeout` in the error shape and its connection is
closed, on the fast path (POST /v1/recommend), on framework routes, and without a Content-Length; a slow body
that completes in time is answered as usual. Against a real uvicorn server, over raw sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.conftest import serve_subprocess
from tests.service.ids import exts

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(bundle_dir: Path) -> Iterator[tuple[str, int]]:
    with serve_subprocess(bundle_dir, env={"SEQREC_BODY_TIMEOUT_S": str(TIMEOUT_S)}) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def _answer(sock: socket.socket, limit_s: float) -> tuple[bytes, bool]:
    """(everything the server sent within `limit_s`, whether it closed the connection)."""
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    return data, True


def _status_and_body(data: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


BODY = json.dumps({"history": exts([1, 2, 3]), "k": 3}).encode()
EVENTS = json.dumps({"events": exts([1, 2])}).encode()


@pytest.mark.parametrize(
    ("path", "body", "chunked"),
    [("/v1/recommend", BODY, False), ("/v1/sessions/s1/events", EVENTS, False), ("/v1/recommend", BODY, True)],
    ids=["fast-path", "framework-route", "no-content-length"],
)
def test_a_stalled_body_gets_408_and_its_connection_closed(server: tuple[str, int], path: str, body: bytes, chunked: bool) -> None:
    host, port = server
    with socket.create_connection((host, port)) as sock:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode())
        half = body[: len(body) // 2]
        sock.sendall(f"{len(half):x}\r\n".encode() + half + b"\r\n" if chunked else half)
        start = time.perf_counter()
        data, closed = _answer(sock, 5 * TIMEOUT_S)
    took = time.perf_counter() - start
    status, payload = _status_and_body(data)
    assert status == 408 and payload["error"]["code"] == "body_timeout", data  # type: ignore[index]
    assert TIMEOUT_S * 0.9 <= took < 4 * TIMEOUT_S and closed


def test_a_slow_body_that_arrives_in_time_is_answered(server: tuple[str, int]) -> None:
    host, port = server
    with socket.create_connection((host, port)) as sock:
        sock.sendall(f"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n".encode())  # fmt: skip
        for i in range(0, len(BODY), len(BODY) // 3 + 1):
            sock.sendall(BODY[i : i + len(BODY) // 3 + 1])
            time.sleep(TIMEOUT_S / 5)
        data, _ = _answer(sock, 5)
    status, payload = _status_and_body(data)
    assert status == 200 and len(payload["items"]) == 3  # type: ignore[arg-type]
