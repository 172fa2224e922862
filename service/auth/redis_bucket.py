"""Per-key token buckets in Redis, shared by every replica: one Lua script (atomic, one round trip), timed
by Redis's own `TIME` so that replicas with skewed clocks share one clock.

A redis-py asyncio call costs ~170 µs of event-loop CPU on our 2-core machine (docs/service.md), as much as
a third of a recommendation, so a replica asks Redis as little as exactness allows:
- requests for one key that arrive while its call is in flight go together in the next call (it takes n
  tokens, first come first served: the same as n single takes);
- far from the limit, a replica admits up to `local_share` of the tokens Redis last reported left, for
  `lease_s`, without waiting, and takes them in Redis in the next call (at most every `sync_interval_s`,
  20 ms: well inside the lease, so the allowance is renewed before it runs out; at 5 ms the calls cost ~3 %
  of a replica's event loop at 2,500 req/s, and how often they run does not change the bound below).
  Those takes are forced, so every admitted request costs its token; with N replicas the bucket can dip
  below empty by at most N * local_share of what was left, and then refuses until that is refilled. Near
  the limit (under 1 / local_share tokens left) every request waits for Redis's answer.
A Redis failure lets requests through (fail open: ranking must survive a Redis outage, as it does for
sessions): they are counted, and Redis is not asked again for `retry_s`, since a Redis that times out
would otherwise add its timeout to every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, forced (tokens of requests already admitted), n
# (requests waiting). Refills, takes the forced tokens (the bucket may go negative), then up to n whole
# tokens. Returns {taken, ms until the next token (0 when all n were taken), whole tokens left}.
# State: tokens (float) and the time they were computed (µs from Redis TIME; < 2^53, exact in a Lua
# double, and Redis writes Lua numbers with %.17g). The key expires once the bucket would be full again,
# the same state as a missing key.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local forced = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000000) - forced
local taken = 0
if tokens >= 1 then
  taken = math.min(n, math.floor(tokens))
end
tokens = tokens - taken
local wait_ms = 0
if taken < n then
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {taken, wait_ms, math.floor(tokens)}
"""

_Key = tuple[str, float, int]  # name, rate, burst


@dataclass
class _Bucket:
    """One key's state in this replica."""

    waiters: list[asyncio.Future[int]] = field(default_factory=list)  # requests waiting for Redis's answer
    debt: int = 0  # requests admitted here on the allowance, not yet taken in Redis
    allowance: int = 0  # requests this replica may still admit without asking ...
    lease_until: float = 0.0  # ... until then (other replicas take tokens too)
    synced_at: float = -math.inf
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a waiter arrived: sync now
    sender: asyncio.Task[None] | None = None


class RedisBucket:
    """Buckets at `<prefix>rl:<name>`, shared by every replica on the same Redis. `on_error` is called once
    per request let through unchecked (Redis failed, or is skipped after a failure)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "seqrec:",
        timeout_s: float = 0.5,
        retry_s: float = 1.0,
        on_error: Callable[[], None] | None = None,
        local_share: float = 0.1,
        lease_s: float = 0.05,
        sync_interval_s: float = 0.02,
    ) -> None:
        self.prefix = prefix
        self.retry_s = retry_s
        self.local_share = local_share
        self.lease_s = lease_s
        self.sync_interval_s = sync_interval_s
        self._on_error = on_error or (lambda: None)
        self._skip_until = 0.0
        self._logged_at = -math.inf
        self._buckets: dict[_Key, _Bucket] = {}
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, single_connection_client=True
        )
        # EVALSHA with the script's digest; redis-py loads the script again after a NOSCRIPT (Redis restart)
        self._script = self._client.register_script(_TOKEN_BUCKET)

    async def acquire(self, name: str, rate: float, burst: int) -> int:
        now = time.monotonic()
        if now < self._skip_until:
            self._on_error()
            return 0
        key = (name, rate, burst)
        bucket = self._buckets.get(key) or self._buckets.setdefault(key, _Bucket())
        if bucket.allowance > 0 and now < bucket.lease_until:
            bucket.allowance -= 1
            bucket.debt += 1
            self._start_sync(key, bucket)
            return 0
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        bucket.waiters.append(waiter)
        bucket.wake.set()
        self._start_sync(key, bucket)
        return await waiter

    def _start_sync(self, key: _Key, bucket: _Bucket) -> None:
        if bucket.sender is None:
            bucket.sender = asyncio.create_task(self._sync(key, bucket))

    async def _sync(self, key: _Key, bucket: _Bucket) -> None:
        """Sends what is queued (waiters, debt) until nothing is; debt alone waits for the sync interval."""
        waiters: list[asyncio.Future[int]] = []
        try:
            while bucket.waiters or bucket.debt:
                delay = bucket.synced_at + self.sync_interval_s - time.monotonic()
                if not bucket.waiters and delay > 0:
                    bucket.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(bucket.wake.wait(), delay)
                waiters, bucket.waiters = bucket.waiters, []
                debt, bucket.debt = bucket.debt, 0
                taken, wait_ms, left = await self._take(key, debt, len(waiters))
                bucket.synced_at = time.monotonic()
                bucket.allowance = max(0, int(left * self.local_share))
                bucket.lease_until = bucket.synced_at + self.lease_s
                for i, waiter in enumerate(waiters):  # first come, first served
                    if not waiter.done():
                        waiter.set_result(0 if i < taken else wait_ms)
                waiters = []
        finally:  # no await between the empty queue and here: nobody can queue behind a finished sender
            bucket.sender = None
            for waiter in (*waiters, *bucket.waiters):  # only when cancelled (close) mid-call
                waiter.cancel()

    async def _take(self, key: _Key, forced: int, n: int) -> tuple[int, int, int]:
        name, rate, burst = key
        try:
            reply = await self._script(keys=[f"{self.prefix}rl:{name}"], args=[rate, burst, forced, n])
            taken, wait_ms, left = (int(x) for x in reply)
            return taken, wait_ms, left
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
            return n, 0, 0

    async def close(self) -> None:
        """Takes the tokens of requests admitted on the allowance (up to a second), then closes."""
        senders = [b.sender for b in self._buckets.values() if b.sender is not None]
        if senders:
            _, pending = await asyncio.wait(senders, timeout=1.0)
            for task in pending:
                task.cancel()
        await self._client.aclose()
