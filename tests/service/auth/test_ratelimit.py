"""Per-key token buckets: in a real redis-server (shared by two app instances), in process without Redis,
and failing open when Redis goes away. Rates are high or waits short: no test sleeps more than ~0.2 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scripts.procs import free_port
from service.auth.ratelimit import MemoryBucket
from tests.service.auth.conftest import ITEM, Keys, make_keys
from tests.service.conftest import ClientFactory, RedisServer

PATH = f"/v1/items/{ITEM}"


def _statuses(client: TestClient, keys: Keys, n: int, name: str = "reco") -> list[int]:
    return [client.get(PATH, headers=keys.header(name)).status_code for _ in range(n)]


@pytest.fixture
def keys() -> Keys:
    return make_keys()


@pytest.fixture
def limited(make_client: ClientFactory, redis_url: str, keys: Keys) -> Iterator[TestClient]:
    # 0.2 tokens/s: nothing refills during the test's requests
    with make_client(
        redis_url=redis_url, api_keys=keys.entries, rate_limit_per_s=0.2, rate_limit_burst=4
    ) as c:
        yield c


def test_a_burst_passes_then_429_with_retry_after(
    limited: TestClient, keys: Keys, redis_server: RedisServer
) -> None:
    assert _statuses(limited, keys, 4) == [200] * 4
    r = limited.get(PATH, headers=keys.header("reco"))
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "rate_limited" and "'reco'" in error["message"]
    assert 4000 < error["details"]["retry_after_ms"] <= 5000  # 1 token at 0.2/s, minus the few ms elapsed
    assert r.headers["retry-after"] == "5"
    # the fast path answers 429 the same way, and other keys have their own buckets
    fast = limited.post("/v1/recommend", json={"history": [ITEM]}, headers=keys.header("reco"))
    assert fast.status_code == 429 and fast.headers["retry-after"] == "5"
    assert _statuses(limited, keys, 4, name="all") == [200] * 4
    text = limited.get("/metrics").text
    assert 'seqrec_rate_limited_total{key="reco"} 2.0' in text
    assert 0 < int(redis_server.cli("pttl", "seqrec:rl:reco")) <= 21_000  # gone once it would be full again


def test_the_bucket_refills_with_time(make_client: ClientFactory, redis_url: str, keys: Keys) -> None:
    with make_client(
        redis_url=redis_url, api_keys=keys.entries, rate_limit_per_s=20, rate_limit_burst=3
    ) as client:
        statuses = _statuses(client, keys, 8)
        assert statuses[:3] == [200] * 3 and 429 in statuses
        r = client.get(PATH, headers=keys.header("reco"))
        while r.status_code == 200:  # drain what refilled while the requests ran
            r = client.get(PATH, headers=keys.header("reco"))
        wait_ms = r.json()["error"]["details"]["retry_after_ms"]
        assert 0 < wait_ms <= 50 and r.headers["retry-after"] == "1"  # 1 token per 50 ms
        time.sleep(wait_ms / 1000 + 0.01)
        assert client.get(PATH, headers=keys.header("reco")).status_code == 200


def test_a_per_key_rate_overrides_the_default(make_client: ClientFactory, redis_url: str) -> None:
    keys = make_keys(rate_per_s=0.2, burst=2)
    with make_client(
        redis_url=redis_url, api_keys=keys.entries, rate_limit_per_s=1000, rate_limit_burst=1000
    ) as c:
        assert _statuses(c, keys, 3) == [200, 200, 429]
    unlimited = make_keys(rate_per_s=0)
    with make_client(
        redis_url=redis_url, api_keys=unlimited.entries, rate_limit_per_s=0.2, rate_limit_burst=1
    ) as c:
        assert _statuses(c, unlimited, 5) == [200] * 5


def test_two_app_instances_on_one_redis_share_one_bucket(
    make_client: ClientFactory, redis_url: str, keys: Keys
) -> None:
    opts: dict[str, Any] = {
        "redis_url": redis_url,
        "api_keys": keys.entries,
        "rate_limit_per_s": 0.2,
        "rate_limit_burst": 4,
    }
    with make_client(**opts) as a, make_client(**opts) as b:
        statuses = [(a if i % 2 else b).get(PATH, headers=keys.header("reco")).status_code for i in range(8)]
        assert statuses == [200] * 4 + [429] * 4


def test_without_redis_each_instance_has_its_own_bucket(make_client: ClientFactory, keys: Keys) -> None:
    opts: dict[str, Any] = {"api_keys": keys.entries, "rate_limit_per_s": 0.2, "rate_limit_burst": 2}
    with make_client(**opts) as a, make_client(**opts) as b:
        assert _statuses(a, keys, 3) == [200, 200, 429]
        assert _statuses(b, keys, 3) == [200, 200, 429]


def test_redis_down_fails_open_and_counts(make_client: ClientFactory, keys: Keys) -> None:
    server = RedisServer().start()  # its own server: this test stops it
    try:
        opts = {
            "redis_url": server.url,
            "api_keys": keys.entries,
            "rate_limit_per_s": 0.2,
            "rate_limit_burst": 2,
        }
        with make_client(**opts) as client:
            assert _statuses(client, keys, 3) == [200, 200, 429]
            server.stop()
            assert _statuses(client, keys, 5) == [200] * 5  # unchecked, not refused
            assert (
                client.post(
                    "/v1/recommend", json={"history": [ITEM]}, headers=keys.header("reco")
                ).status_code
                == 200
            )
            text = client.get("/metrics").text
            assert "seqrec_ratelimit_errors_total 6.0" in text
            assert client.get("/readyz").status_code == 200
    finally:
        server.stop()


def test_redis_never_reachable_fails_open(make_client: ClientFactory, keys: Keys) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with make_client(
        redis_url=url, api_keys=keys.entries, rate_limit_per_s=0.2, rate_limit_burst=1
    ) as client:
        assert _statuses(client, keys, 3) == [200] * 3
        assert "seqrec_ratelimit_errors_total 3.0" in client.get("/metrics").text


# (clock steps in s, rate, burst) -> the waits acquire returns (0 = admitted)
MEMORY_CASES = [
    ([0, 0, 0], 1.0, 2, [0, 0, 1000]),
    ([0, 0, 0.5], 1.0, 2, [0, 0, 500]),  # half a token refilled
    ([0, 0, 1.0], 1.0, 2, [0, 0, 0]),
    ([0, 100, 0, 0, 0], 10.0, 2, [0, 0, 0, 100, 100]),  # refill stops at the burst
    ([0, 0, 0.01], 1000.0, 1, [0, 1, 0]),
]


@pytest.mark.parametrize(("steps", "rate", "burst", "expected"), MEMORY_CASES)
def test_memory_bucket(steps: list[float], rate: float, burst: int, expected: list[int]) -> None:
    now = [0.0]
    bucket = MemoryBucket(clock=lambda: now[0])

    async def run() -> list[int]:
        waits = []
        for step in steps:
            now[0] += step
            waits.append(await bucket.acquire("k", rate, burst))
        return waits

    assert asyncio.run(run()) == expected
