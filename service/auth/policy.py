"""Which routes need which scope, by path prefix: one table for every route, the ASGI fast path included,
so that a new route under a prefix is covered without per-route code."""

from __future__ import annotations

from typing import Literal

from service.auth.keys import Scope

Requirement = Scope | Literal["open", "authenticated"]

# for the orchestrator (probes, scraping) and the API docs
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
SCOPED_PREFIXES: tuple[tuple[str, Scope], ...] = (
    ("/v1/recommend", "recommend"),  # also /v1/recommend/stream
    ("/recommend", "recommend"),
    ("/v1/items", "recommend"),
    ("/v1/sessions", "sessions"),
    ("/v1/admin", "admin"),
)


def requirement(path: str) -> Requirement:
    """The scope `path` needs; "open" for OPEN_PATHS; "authenticated" (any valid key) for every other path,
    so that a route outside the table is never open by accident."""
    if path in OPEN_PATHS:
        return "open"
    for prefix, scope in SCOPED_PREFIXES:
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return scope
    return "authenticated"
