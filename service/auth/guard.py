"""The per-request check (key → scope → rate limit) and its lifecycle, opened and closed by the app lifespan."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from service.auth.keys import SCOPES, ApiKey, AuthConfigError, KeyRing, load_keys
from service.auth.policy import Requirement
from service.auth.ratelimit import MemoryBucket, RateLimiter
from service.auth.redis_bucket import RedisBucket
from service.errors import Forbidden, RateLimited, Unauthorized
from service.metrics.registry import Metrics
from service.settings import Settings

logger = logging.getLogger(__name__)

HOW_TO_SEND = "send the key as `Authorization: Bearer <key>` or `X-API-Key: <key>`"


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key of `Authorization: Bearer <key>`, else of `X-API-Key`, from raw ASGI headers (lower-case names)."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            api_key = value.decode("latin-1").strip()
    return api_key


class Guard:
    """Authenticates a request's key, checks its scope and takes a token from its bucket, raising
    Unauthorized (401), Forbidden (403) or RateLimited (429). With `enabled` False (no keys) the middleware
    does not call it: every request passes."""

    def __init__(
        self,
        keys: KeyRing,
        limiter: RateLimiter,
        metrics: Metrics,
        *,
        enabled: bool,
        rate_per_s: float,
        burst: int,
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.metrics = metrics
        self.enabled = enabled
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._rejected = {r: metrics.auth_rejected.labels(r) for r in ("missing", "unknown", "scope")}

    async def check(self, headers: Iterable[tuple[bytes, bytes]], need: Requirement) -> ApiKey:
        raw = presented_key(headers)
        if raw is None:
            self._rejected["missing"].inc()
            raise Unauthorized(f"this route needs an API key: {HOW_TO_SEND}")
        key = self.keys.lookup(raw)
        if key is None:
            self._rejected["unknown"].inc()
            raise Unauthorized(f"unknown API key: {HOW_TO_SEND}, with a key the operator configured")
        if need in SCOPES and need not in key.scopes:
            self._rejected["scope"].inc()
            raise Forbidden(
                f"API key {key.name!r} lacks the {need!r} scope this route needs (it has: "
                f"{', '.join(sorted(key.scopes))}); use a key with {need!r}",
                details={"needed_scope": need, "key": key.name, "key_scopes": sorted(key.scopes)},
            )
        await self._take_token(key)
        return key

    async def _take_token(self, key: ApiKey) -> None:
        rate = self.rate_per_s if key.rate_per_s is None else key.rate_per_s
        if rate <= 0:
            return
        burst = self.burst if key.burst is None else key.burst
        wait_ms = await self.limiter.acquire(key.name, rate, burst)
        if wait_ms <= 0:
            return
        self.metrics.rate_limited.labels(key.name).inc()
        raise RateLimited(
            f"API key {key.name!r} is over its rate limit ({rate:g} requests/s, burst {burst}): "
            f"retry after {wait_ms} ms",
            details={"retry_after_ms": wait_ms, "rate_per_s": rate, "burst": burst},
            headers={"Retry-After": str(max(1, math.ceil(wait_ms / 1000)))},
        )


def auth_enabled(settings: Settings, keys: KeyRing) -> bool:
    if settings.auth_required is None:
        return len(keys) > 0
    if settings.auth_required and len(keys) == 0:
        raise AuthConfigError(
            "SEQREC_AUTH_REQUIRED is true but no API keys are configured: set SEQREC_API_KEYS or "
            "SEQREC_API_KEYS_FILE (entries from `python -m service.auth new-key`)"
        )
    return settings.auth_required


def make_limiter(settings: Settings, metrics: Metrics) -> RateLimiter:
    if settings.redis_url is None:
        logger.warning("SEQREC_REDIS_URL is unset: rate limits are kept per replica, in process")
        return MemoryBucket()
    return RedisBucket(
        settings.redis_url, settings.redis_prefix, timeout_s=settings.redis_timeout_s,
        on_error=metrics.ratelimit_errors.inc,
    )  # fmt: skip


@asynccontextmanager
async def open_guard(settings: Settings, metrics: Metrics) -> AsyncIterator[Guard]:
    """Loads the keys (refusing bad ones before anything else starts) and owns the limiter's Redis client."""
    keys = load_keys(settings.api_keys, settings.api_keys_file)
    enabled = auth_enabled(settings, keys)
    if enabled:
        logger.info("API keys required: %d configured (%s)", len(keys), ", ".join(keys.names()))
    else:
        logger.warning("API authentication is off (no API keys configured): the API is open to every caller")
    limiter = make_limiter(settings, metrics) if enabled else MemoryBucket()
    try:
        yield Guard(
            keys,
            limiter,
            metrics,
            enabled=enabled,
            rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
        )
    finally:
        await limiter.close()
