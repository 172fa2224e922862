"""The session store interface: per-session event lists plus a small key-value cache (explanations).

Sessions hold the catalogue's item ids (strings), never the bundle's dense ids: a bundle swap renumbers dense
ids, and a stored session must keep meaning the same items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class SessionStore(Protocol):
    """Implementations raise `service.errors.StoreUnavailable` when their backend cannot be reached."""

    kind: str

    async def append(self, session_id: str, item_ids: Sequence[str]) -> list[str]:
        """Append events (oldest first), keep the newest `max_len`, refresh the TTL; return the history."""
        ...

    async def get(self, session_id: str) -> list[str]:
        """The stored history, oldest first; [] for an unknown or expired session."""
        ...

    async def delete(self, session_id: str) -> bool: ...

    async def cache_get(self, keys: Sequence[str]) -> list[str | None]: ...

    async def cache_set(self, values: Mapping[str, str], ttl_s: int) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
