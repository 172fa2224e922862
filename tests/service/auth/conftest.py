"""Keys for the auth tests: one per scope and one with all of them, configured by digest only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.auth.keys import ApiKey, Scope, new_key
from tests.service.conftest import ClientFactory
from tests.service.ids import ext, exts

# the fixture bundle's items, as the API names them (catalogue ids)
HISTORY = exts([1, 2, 3])
ITEM = ext(1)


@dataclass
class Keys:
    raw: dict[str, str]  # name -> the key a client sends
    entries: list[ApiKey]

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.raw[name]}"}


def make_keys(**overrides: Any) -> Keys:
    scopes: dict[str, list[Scope]] = {
        "reco": ["recommend"],
        "sess": ["sessions"],
        "ops": ["admin"],
        "all": ["recommend", "sessions", "admin"],
    }
    raw, entries = {}, []
    for name, s in scopes.items():
        raw[name], entry = new_key(name, s)
        entries.append(entry.model_copy(update=overrides))
    return Keys(raw, entries)


@pytest.fixture
def keys() -> Keys:
    return make_keys()


@pytest.fixture
def auth_client(make_client: ClientFactory, keys: Keys) -> Iterator[TestClient]:
    with make_client(api_keys=keys.entries, rate_limit_per_s=0) as c:
        yield c
