"""Redis unreachable: inline histories still get answers (degraded, counted); session-only calls get 503."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from scripts.procs import free_port
from tests.service.conftest import ClientFactory
from tests.service.ids import exts


@pytest.fixture
def down_client(make_client: ClientFactory) -> Iterator[TestClient]:
    with make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.2) as client:
        yield client


def samples(client: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_inline_history_is_served_degraded(down_client: TestClient) -> None:
    r = down_client.post("/v1/recommend", json={"session_id": "s", "history": exts([1, 2]), "k": 3})
    assert r.status_code == 200
    assert r.json()["degraded"] is True and len(r.json()["items"]) == 3
    assert samples(down_client, "seqrec_degraded_requests_total") == {(("reason", "session_store"),): 1.0}
    assert samples(down_client, "seqrec_redis_errors_total")[(("op", "append"),)] >= 1


def test_without_session_no_redis_is_needed(down_client: TestClient) -> None:
    r = down_client.post("/v1/recommend", json={"history": exts([1, 2]), "k": 3})
    assert r.status_code == 200 and r.json()["degraded"] is False


def test_session_only_requests_get_503(down_client: TestClient) -> None:
    r = down_client.post("/v1/recommend", json={"session_id": "s"})
    assert r.status_code == 503
    assert "send the history inline" in r.json()["error"]["message"]
    assert down_client.get("/v1/sessions/s").status_code == 503
    assert down_client.post("/v1/sessions/s/events", json={"events": exts([1])}).status_code == 503
    assert down_client.delete("/v1/sessions/s").status_code == 503
