"""Per-key token buckets: in Redis, shared by every replica, or in process when there is no Redis.

A bucket holds at most `burst` tokens and refills at `rate` tokens per second; a request takes one token
or is told how long until one is there. The Redis bucket is one Lua script (atomic, one round trip),
timed by Redis's own `TIME` so that replicas with skewed clocks share one clock. A Redis failure lets the
request through (fail open: ranking must survive a Redis outage, as it does for sessions) and is counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, n (requests). Takes up to n whole tokens; returns
# {taken, ms until the next token is there (0 when all n were taken)}, as n single takes in a row would.
# State: tokens (float) and the time it was computed (µs from Redis TIME; < 2^53, exact in a Lua double,
# and Redis writes Lua numbers with %.17g). The key expires once the bucket would be full again, which is
# the same as the state of a missing key.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000000)
local taken = math.min(n, math.floor(tokens))
tokens = tokens - taken
local wait_ms = 0
if taken < n then
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {taken, wait_ms}
"""


class RateLimiter(Protocol):
    async def acquire(self, name: str, rate: float, burst: int) -> int:
        """Take one token from bucket `name`: 0 when taken, else the milliseconds until one is there."""
        ...

    async def close(self) -> None: ...


class MemoryBucket:
    """In-process buckets (no SEQREC_REDIS_URL): the limit then holds per replica, not across them."""

    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}  # name -> (tokens, time)

    async def acquire(self, name: str, rate: float, burst: int) -> int:
        now = self._clock()
        tokens, then = self._state.get(name, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - then) * rate)
        wait_ms = 0
        if tokens >= 1:
            tokens -= 1
        else:
            wait_ms = math.ceil((1 - tokens) * 1000 / rate)
        self._state[name] = (tokens, now)
        return wait_ms

    async def close(self) -> None:
        self._state.clear()


class RedisBucket:
    """Buckets at `<prefix>rl:<name>`, shared by every replica on the same Redis.

    Requests for one bucket that arrive while its script call is in flight are sent together as the next
    call (one round trip takes n tokens): under load the Redis round trip, not the bucket, was the cost
    (at 32 connections one call per request cost ~30 % of the service's req/s; docs/service.md).
    After a failure Redis is not asked again for `retry_s`: a Redis that times out would otherwise add its
    timeout to every request. Requests let through unchecked (failed or skipped) call `on_error`."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "seqrec:",
        timeout_s: float = 0.5,
        retry_s: float = 1.0,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.prefix = prefix
        self.retry_s = retry_s
        self._on_error = on_error or (lambda: None)
        self._skip_until = 0.0
        self._logged_at = -math.inf
        self._queued: dict[tuple[str, float, int], list[asyncio.Future[int]]] = {}
        self._sending: dict[tuple[str, float, int], asyncio.Task[None]] = {}
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        # EVALSHA with the script's digest; redis-py loads the script again after a NOSCRIPT (Redis restart)
        self._script = self._client.register_script(_TOKEN_BUCKET)

    async def acquire(self, name: str, rate: float, burst: int) -> int:
        if time.monotonic() < self._skip_until:
            self._on_error()
            return 0
        bucket = (name, rate, burst)
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(bucket, []).append(waiter)
        if bucket not in self._sending:
            self._sending[bucket] = asyncio.create_task(self._send_queued(bucket))
        return await waiter

    async def _send_queued(self, bucket: tuple[str, float, int]) -> None:
        name, rate, burst = bucket
        waiters: list[asyncio.Future[int]] = []
        try:
            while waiters := self._queued.pop(bucket, []):
                taken, wait_ms = await self._take(name, rate, burst, len(waiters))
                for i, waiter in enumerate(waiters):  # first come, first served
                    if not waiter.done():
                        waiter.set_result(0 if i < taken else wait_ms)
        finally:  # no await between the empty queue and here: nobody can queue behind a finished sender
            del self._sending[bucket]
            for waiter in waiters:  # cancelled (close) mid-call
                waiter.cancel()

    async def _take(self, name: str, rate: float, burst: int, n: int) -> tuple[int, int]:
        try:
            taken, wait_ms = await self._script(keys=[f"{self.prefix}rl:{name}"], args=[rate, burst, n])
            return int(taken), int(wait_ms)
        except Exception as e:  # RedisError, OSError, or a reply we cannot read: the store failed
            now = time.monotonic()
            if now - self._logged_at > 60:  # once a minute, not once a request
                self._logged_at = now
                logger.warning(
                    "rate limit store (Redis) failed (%s): requests pass unchecked", type(e).__name__
                )
            self._skip_until = now + self.retry_s
            for _ in range(n):
                self._on_error()
            return n, 0

    async def close(self) -> None:
        for task in list(self._sending.values()):
            task.cancel()
        for waiters in self._queued.values():
            for waiter in waiters:
                waiter.cancel()
        self._queued.clear()
        await self._client.aclose()
