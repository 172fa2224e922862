"""Per-key token buckets: the interface, and the in-process bucket used when there is no Redis
(service/auth/redis_bucket.py shares them across replicas).

A bucket holds at most `burst` tokens and refills at `rate` tokens per second; a request takes one token
or is told how long until one is there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol


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
