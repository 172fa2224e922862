"""Shared fixtures: a fixture bundle, a real redis-server, a tiny LLM folder, and app clients."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scripts import procs
from scripts.procs import Redis
from service.main import create_app
from service.settings import Settings
from tests.service.bundle_factory import build_bundle
from tests.tiny_llm import build_tiny_llama


class RedisServer(Redis):
    """A throw-away redis-server process (no persistence, loopback only; its log in a temporary folder)."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (the tests need it)")
        super().__init__(Path(tempfile.mkdtemp(prefix="test-redis-")), persist=False)


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
def bundle_b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second bundle (other embeddings, id test-meanpool-0001): what a swap moves to."""
    root = tmp_path_factory.mktemp("bundle-b")
    build_bundle(root, seed=1)
    return root


def tamper(src: Path, dst: Path, rel: str = "items.jsonl") -> Path:
    """A copy of bundle `src` at `dst` with one byte of `rel` changed (its checksum fails)."""
    shutil.copytree(src, dst)
    data = bytearray((dst / rel).read_bytes())
    data[20] = (data[20] + 1) % 256
    (dst / rel).write_bytes(bytes(data))
    return dst


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
    with procs.service(env or {}, bundle, timeout_s=timeout_s) as running:
        yield running.url


@pytest.fixture(scope="session")
def live_server(bundle_dir: Path) -> Iterator[str]:
    with serve_subprocess(bundle_dir) as url:
        yield url


@pytest.fixture
def redis_client(make_client: ClientFactory, redis_url: str) -> Iterator[TestClient]:
    with make_client(redis_url=redis_url) as c:
        yield c
