"""In-process store for development and tests: lost on restart and not shared between workers."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence


class InMemoryStore:
    kind = "memory"

    def __init__(self, max_len: int, ttl_s: int) -> None:
        self.max_len = max_len
        self.ttl_s = ttl_s
        self._sessions: dict[str, tuple[float, list[str]]] = {}
        self._cache: dict[str, tuple[float, str]] = {}

    def _alive(self, session_id: str) -> list[str] | None:
        entry = self._sessions.get(session_id)
        if entry is None or entry[0] < time.monotonic():
            self._sessions.pop(session_id, None)
            return None
        return entry[1]

    async def append(self, session_id: str, item_ids: Sequence[str]) -> list[str]:
        history = (self._alive(session_id) or []) + list(item_ids)
        history = history[-self.max_len :]
        self._sessions[session_id] = (time.monotonic() + self.ttl_s, history)
        return list(history)

    async def get(self, session_id: str) -> list[str]:
        return list(self._alive(session_id) or [])

    async def delete(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    async def cache_get(self, keys: Sequence[str]) -> list[str | None]:
        now = time.monotonic()
        out: list[str | None] = []
        for key in keys:
            entry = self._cache.get(key)
            out.append(entry[1] if entry and entry[0] >= now else None)
        return out

    async def cache_set(self, values: Mapping[str, str], ttl_s: int) -> None:
        expires = time.monotonic() + ttl_s
        self._cache.update({k: (expires, v) for k, v in values.items()})

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._sessions.clear()
        self._cache.clear()
