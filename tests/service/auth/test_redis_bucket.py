"""The Redis token bucket alone, against a real redis-server: one script call for concurrent requests,
local admission far from the limit with exact accounting, the lease, and a flushed script cache."""

from __future__ import annotations

import asyncio
import time

from service.auth.redis_bucket import RedisBucket
from tests.service.conftest import RedisServer


def _script_calls(redis_server: RedisServer) -> int:
    stats = redis_server.cli("info", "commandstats")
    return sum(
        int(line.split("calls=")[1].split(",")[0]) for line in stats.splitlines() if "cmdstat_eval" in line
    )


def _tokens(redis_server: RedisServer, key: str) -> float:
    return float(redis_server.cli("hget", key, "tokens"))


def test_the_script_is_loaded_again_after_a_redis_script_flush(
    redis_server: RedisServer, redis_url: str
) -> None:
    async def run() -> list[int]:
        bucket = RedisBucket(redis_url, prefix="t:")
        try:
            first = [await bucket.acquire("k", 0.2, 2) for _ in range(2)]
            redis_server.cli("script", "flush")  # as after a Redis restart
            return [*first, await bucket.acquire("k", 0.2, 2)]
        finally:
            await bucket.close()

    waits = asyncio.run(run())
    assert waits[:2] == [0, 0] and 4000 < waits[2] <= 5000


def test_concurrent_takes_share_round_trips_and_stay_exact(redis_server: RedisServer, redis_url: str) -> None:
    async def run() -> list[int]:
        bucket = RedisBucket(redis_url, prefix="t:")
        try:
            return list(await asyncio.gather(*(bucket.acquire("k", 0.2, 5) for _ in range(12))))
        finally:
            await bucket.close()

    redis_server.cli("config", "resetstat")
    waits = asyncio.run(run())
    assert waits[:5] == [0] * 5 and all(4000 < w <= 5000 for w in waits[5:])  # first come, first served
    stats = redis_server.cli("info", "commandstats")
    calls = sum(
        int(line.split("calls=")[1].split(",")[0]) for line in stats.splitlines() if "cmdstat_eval" in line
    )
    assert 1 <= calls <= 3  # the first request's call, then the 11 queued behind it in one (+ a script load)


def test_far_from_the_limit_requests_pass_without_waiting_and_every_token_is_taken(
    redis_server: RedisServer, redis_url: str
) -> None:
    async def run() -> list[int]:
        bucket = RedisBucket(redis_url, prefix="t:")
        try:
            return [await bucket.acquire("k", 0.001, 1000) for _ in range(300)]
        finally:
            await bucket.close()  # takes the tokens of what was admitted on the allowance

    redis_server.cli("config", "resetstat")
    start = time.monotonic()
    assert asyncio.run(run()) == [0] * 300
    assert _script_calls(redis_server) < 60  # vs 300 one at a time
    refill = (time.monotonic() - start) * 0.001
    assert 700 <= _tokens(redis_server, "t:rl:k") <= 700 + refill + 1e-6


def test_the_allowance_is_a_short_lease(redis_server: RedisServer, redis_url: str) -> None:
    async def run() -> tuple[int, int]:
        bucket = RedisBucket(redis_url, prefix="t:", lease_s=0.05)
        try:
            await bucket.acquire("k", 0.001, 1000)  # Redis answers: ~999 left, an allowance of ~99
            await asyncio.sleep(0.02)  # the debt-free replica has synced nothing since
            redis_server.cli("hset", "t:rl:k", "tokens", "0")  # another replica emptied the bucket
            within = await bucket.acquire("k", 0.001, 1000)  # still on the lease: admitted here
            await asyncio.sleep(0.1)
            return within, await bucket.acquire("k", 0.001, 1000)  # lease over: Redis says no
        finally:
            await bucket.close()

    within, after = asyncio.run(run())
    assert within == 0 and after > 100_000  # 1 token at 0.001/s; the admitted one left the bucket at -1


def test_after_an_outage_the_limit_applies_again() -> None:
    server = RedisServer().start()  # its own server: this test stops and restarts it
    errors: list[int] = []
    try:

        async def run() -> list[list[int]]:
            bucket = RedisBucket(server.url, prefix="t:", retry_s=0.05, on_error=lambda: errors.append(1))
            try:
                before = [await bucket.acquire("k", 0.2, 2) for _ in range(3)]
                server.stop()
                during = [await bucket.acquire("k", 0.2, 2) for _ in range(3)]
                server.start()  # empty: the bucket is full again
                await asyncio.sleep(0.06)
                after = [await bucket.acquire("k", 0.2, 2) for _ in range(3)]
                return [before, during, after]
            finally:
                await bucket.close()

        before, during, after = asyncio.run(run())
    finally:
        server.stop()
    assert before[:2] == [0, 0] and before[2] > 0
    assert during == [0, 0, 0] and len(errors) == 3  # unchecked and counted (the first failed, two skipped)
    assert after[:2] == [0, 0] and after[2] > 0
