"""API key entries and their look-up. Only the SHA-256 digest of a key is configured or held in memory.

A dict from digest to entry is a constant-time-enough look-up: the digest of a high-entropy random token
(`new_key`, 32 bytes from `secrets`) leaks nothing useful through timing, and the caller never learns the
stored digests. Low-entropy keys (passwords) would need a slow hash; `new_key` never makes those.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

Scope = Literal["recommend", "sessions", "admin"]
SCOPES: tuple[Scope, ...] = ("recommend", "sessions", "admin")


class AuthConfigError(ValueError):
    """The configured keys cannot be used: the service refuses to start."""


class ApiKey(BaseModel):
    """One configured key: what `python -m service.auth new-key` prints, stored in SEQREC_API_KEYS or the
    SEQREC_API_KEYS_FILE list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="names the key in logs, 403s and metrics"
    )
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 digest of the key")
    scopes: frozenset[Scope] = Field(min_length=1)
    rate_per_s: float | None = Field(default=None, ge=0, description="overrides SEQREC_RATE_LIMIT_PER_S")
    burst: int | None = Field(default=None, ge=1, description="overrides SEQREC_RATE_LIMIT_BURST")

    @field_validator("sha256")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()


_KEY_LIST = TypeAdapter(list[ApiKey])


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_key(
    name: str, scopes: Iterable[Scope], rate_per_s: float | None = None, burst: int | None = None
) -> tuple[str, ApiKey]:
    """A fresh random key (shown once) and the entry to configure for it."""
    raw = secrets.token_urlsafe(32)
    entry = ApiKey(
        name=name, sha256=hash_key(raw), scopes=frozenset(scopes), rate_per_s=rate_per_s, burst=burst
    )
    return raw, entry


def entry_json(entry: ApiKey) -> str:
    data = entry.model_dump(exclude_none=True)
    data["scopes"] = sorted(data["scopes"])
    return json.dumps(data)


def read_keys_file(path: Path) -> list[ApiKey]:
    try:
        return _KEY_LIST.validate_json(path.read_bytes())
    except OSError as e:
        raise AuthConfigError(f"cannot read the API keys file {path}: {e.strerror}") from e
    except ValidationError as e:
        raise AuthConfigError(f"API keys file {path} is not a JSON list of key entries: {e}") from e


class KeyRing:
    """The configured keys by digest. Names and digests must be unique (a name is a rate-limit bucket)."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._by_digest: dict[str, ApiKey] = {}
        names: set[str] = set()
        for key in keys:
            if key.name in names:
                raise AuthConfigError(f"API key name {key.name!r} is configured twice: names must be unique")
            if key.sha256 in self._by_digest:
                raise AuthConfigError(
                    f"API keys {self._by_digest[key.sha256].name!r} and {key.name!r} have the same digest"
                )
            names.add(key.name)
            self._by_digest[key.sha256] = key

    def __len__(self) -> int:
        return len(self._by_digest)

    def names(self) -> list[str]:
        return sorted(k.name for k in self._by_digest.values())

    def lookup(self, raw: str) -> ApiKey | None:
        return self._by_digest.get(hash_key(raw))


def load_keys(entries: Iterable[ApiKey], path: Path | None) -> KeyRing:
    """The keys of the settings plus those of the keys file, if one is named."""
    return KeyRing([*entries, *(read_keys_file(path) if path is not None else [])])
