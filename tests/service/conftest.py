"""Shared fixtures: a fixture bundle, a real redis-server, a tiny LLM folder, and app clients."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from tests.service.bundle_factory import build_bundle
from tests.tiny_llm import build_tiny_llama


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throw-away redis-server process (no persistence, loopback only)."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail(
                "redis-server is not installed: `apt-get install -y redis-server` (the tests need it)"
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        for _ in range(100):
            if self.cli("ping").strip() == "PONG":
                return self
            time.sleep(0.05)
        pytest.fail(f"redis-server did not answer on port {self.port}")

    def cli(self, *args: str) -> str:
        done = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return done.stdout

    def stop(self) -> None:
        self.cli("shutdown", "nosave")
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
            except OSError:
                return
            time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.cli("flushall")
    return redis_server.url


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    build_bundle(root)
    return root


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama (hidden 64) with the real SmolLM2 tokenizer and chat template."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llm"), hidden=64)


@pytest.fixture
def make_settings(bundle_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"bundle_dir": bundle_dir, "llm_backend": "none", "redis_url": None}
        values.update(overrides)
        return Settings(**values)

    return make


ClientFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> ClientFactory:
    @contextmanager
    def make(**overrides: Any) -> Iterator[TestClient]:
        with TestClient(create_app(make_settings(**overrides)), raise_server_exceptions=False) as client:
            yield client

    return make


@pytest.fixture
def client(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client() as c:
        yield c


@contextmanager
def serve_subprocess(bundle: Path, env: dict[str, str] | None = None, timeout_s: float = 120) -> Iterator[str]:
    """A real `uvicorn` process serving `bundle` on a free port (no LLM, in-process sessions); yields its URL."""
    port = free_port()
    full_env = {
        **os.environ, "SEQREC_BUNDLE_DIR": str(bundle), "SEQREC_LLM_BACKEND": "none", "OMP_NUM_THREADS": "1",
        **(env or {}),
    }  # fmt: skip
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the service did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def live_server(bundle_dir: Path) -> Iterator[str]:
    with serve_subprocess(bundle_dir) as url:
        yield url


@pytest.fixture
def redis_client(make_client: ClientFactory, redis_url: str) -> Iterator[TestClient]:
    with make_client(redis_url=redis_url) as c:
        yield c
