"""Redis store: one capped list per session (RPUSH + LTRIM, TTL refreshed on every event), on a
redis.asyncio connection pool. Every Redis failure becomes StoreUnavailable and is counted."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from service.errors import StoreUnavailable


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        max_len: int,
        ttl_s: int,
        prefix: str = "seqrec:",
        timeout_s: float = 0.5,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.max_len = max_len
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._on_error = on_error or (lambda op: None)
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def _fail(self, op: str, e: Exception) -> StoreUnavailable:
        self._on_error(op)
        return StoreUnavailable(
            f"session store (Redis) unavailable during {op}: {type(e).__name__}; retry later, "
            "or send the history inline without session_id",
        )

    async def _run(self, op: str, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as e:
            if isinstance(e, (RedisConnectionError, OSError)):
                # Idle pooled connections to a server that went away are dead too, and redis-py finds out only
                # when it next uses one: after a Redis restart each failed one command, up to seconds after
                # /readyz was clean again (the fault campaign's redis_restart fault). Drop them all now.
                with contextlib.suppress(Exception):
                    await self._client.connection_pool.disconnect(inuse_connections=False)
            raise self._fail(op, e) from e

    async def append(self, session_id: str, item_ids: Sequence[str]) -> list[str]:
        key = self._key(session_id)
        async with self._client.pipeline(transaction=True) as pipe:
            if item_ids:
                pipe.rpush(key, *item_ids)
            pipe.ltrim(key, -self.max_len, -1)
            pipe.expire(key, self.ttl_s)
            pipe.lrange(key, 0, -1)
            results = await self._run("append", pipe.execute())
        return list(results[-1])

    async def get(self, session_id: str) -> list[str]:
        return list(await self._run("get", self._client.lrange(self._key(session_id), 0, -1)))

    async def delete(self, session_id: str) -> bool:
        return bool(await self._run("delete", self._client.delete(self._key(session_id))))

    async def cache_get(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        values = await self._run("cache_get", self._client.mget([self.prefix + k for k in keys]))
        return list(values)

    async def cache_set(self, values: Mapping[str, str], ttl_s: int) -> None:
        if not values:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for k, v in values.items():
                pipe.set(self.prefix + k, v, ex=ttl_s)
            await self._run("cache_set", pipe.execute())

    async def ping(self) -> None:
        await self._run("ping", self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()
