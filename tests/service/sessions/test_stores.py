"""The SessionStore contract, run against InMemoryStore and RedisStore (a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from scripts.procs import free_port
from service.errors import StoreUnavailable
from service.sessions.base import SessionStore
from service.sessions.memory import InMemoryStore
from service.sessions.redis_store import RedisStore

StoreFactory = Callable[..., SessionStore]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    if request.param == "memory":
        return lambda max_len=3, ttl_s=60: InMemoryStore(max_len, ttl_s)
    url = request.getfixturevalue("redis_url")
    return lambda max_len=3, ttl_s=60: RedisStore(url, max_len, ttl_s)


def run(make_store: StoreFactory, body: Callable[[SessionStore], Awaitable[Any]], **kw: Any) -> Any:
    async def main() -> Any:
        store = make_store(**kw)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_append_caps_and_orders(make_store: StoreFactory) -> None:
    async def body(s: SessionStore) -> None:
        # catalogue ids are strings of any shape (ASINs, SKUs), kept as they came
        assert await s.append("a", ["1", "B00X"]) == ["1", "B00X"]
        assert await s.append("a", ["3", "4:x"]) == ["B00X", "3", "4:x"]
        assert await s.append("a", []) == ["B00X", "3", "4:x"]
        assert await s.get("a") == ["B00X", "3", "4:x"]
        assert await s.get("b") == []

    run(make_store, body)


def test_delete(make_store: StoreFactory) -> None:
    async def body(s: SessionStore) -> None:
        await s.append("a", ["1"])
        assert await s.delete("a") is True
        assert await s.delete("a") is False
        assert await s.get("a") == []

    run(make_store, body)


def test_ttl_expires(make_store: StoreFactory) -> None:
    async def body(s: SessionStore) -> None:
        await s.append("a", ["1"])
        await asyncio.sleep(1.2)
        assert await s.get("a") == []

    run(make_store, body, ttl_s=1)


def test_cache(make_store: StoreFactory) -> None:
    async def body(s: SessionStore) -> None:
        await s.cache_set({"k1": "v1", "k2": "v2"}, ttl_s=60)
        assert await s.cache_get(["k1", "nope", "k2"]) == ["v1", None, "v2"]
        assert await s.cache_get([]) == []

    run(make_store, body)


def test_redis_unreachable_raises_store_unavailable() -> None:
    errors: list[str] = []

    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", 3, 60, timeout_s=0.2, on_error=errors.append)
        try:
            with pytest.raises(StoreUnavailable, match="send the history inline"):
                await store.append("a", ["1"])
            with pytest.raises(StoreUnavailable):
                await store.ping()
        finally:
            await store.close()

    asyncio.run(main())
    assert errors == ["append", "ping"]
