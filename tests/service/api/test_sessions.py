"""Session endpoints against a real redis-server."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import ClientFactory, RedisServer
from tests.service.ids import dense_items, ext, exts


def test_session_lifecycle(redis_client: TestClient, redis_server: RedisServer) -> None:
    r = redis_client.post("/v1/sessions/abc/events", json={"events": [ext(3), {"item_id": ext(4)}]})
    assert r.status_code == 200 and r.json() == {"session_id": "abc", "history": exts([3, 4]), "length": 2}
    redis_client.post("/v1/sessions/abc/events", json={"events": exts([5])})
    assert redis_client.get("/v1/sessions/abc").json()["history"] == exts([3, 4, 5])
    # Redis holds the catalogue's ids, so a bundle that renumbers its items reads the same session
    assert redis_server.cli("lrange", "seqrec:session:abc", "0", "-1").split() == exts([3, 4, 5])
    assert redis_client.delete("/v1/sessions/abc").status_code == 204
    assert redis_client.get("/v1/sessions/abc").status_code == 404
    assert redis_client.delete("/v1/sessions/abc").status_code == 404


def test_sessions_are_capped_and_expire(
    make_client: ClientFactory, redis_url: str, redis_server: RedisServer
) -> None:
    with make_client(redis_url=redis_url, session_max_len=4, session_ttl_s=100) as client:
        client.post("/v1/sessions/s/events", json={"events": exts([1, 2, 3])})
        client.post("/v1/sessions/s/events", json={"events": exts([4, 5, 6])})
        assert client.get("/v1/sessions/s").json()["history"] == exts([3, 4, 5, 6])
        assert 90 < int(redis_server.cli("ttl", "seqrec:session:s")) <= 100
        redis_server.cli("expire", "seqrec:session:s", "1000")
        client.post("/v1/sessions/s/events", json={"events": exts([7])})
        assert int(redis_server.cli("ttl", "seqrec:session:s")) <= 100  # refreshed by the event


def test_recommend_uses_the_redis_session(redis_client: TestClient) -> None:
    redis_client.post("/v1/sessions/u/events", json={"events": exts([21, 22])})
    body = redis_client.post("/v1/recommend", json={"session_id": "u", "history": exts([23]), "k": 4}).json()
    assert redis_client.get("/v1/sessions/u").json()["history"] == exts([21, 22, 23])
    assert all(21 <= i <= 30 and i not in {21, 22, 23} for i in dense_items(body))
    assert body["degraded"] is False


def test_a_session_outlives_a_renumbering_bundle(make_client: ClientFactory, redis_url: str, tmp_path: object) -> None:
    """A second bundle numbers the same catalogue differently (its dense ids reversed) and drops one item: a
    session stored under the first still means the same items, and the dropped one is listed, not reused."""
    from pathlib import Path

    from tests.service.bundle_factory import build_bundle

    with make_client(redis_url=redis_url) as client:
        client.post("/v1/sessions/keep/events", json={"events": exts([21, 22, 23])})
        first = client.post("/v1/recommend", json={"session_id": "keep", "k": 3}).json()
    other = Path(str(tmp_path)) / "renumbered"
    build_bundle(other, renumber=True, cold_raw_ids=[ext(23)], bundle_id="test-renumbered")
    with make_client(redis_url=redis_url, bundle_dir=other) as client:
        body = client.post("/v1/recommend", json={"session_id": "keep", "k": 3}).json()
        assert body["ignored_items"] == [ext(23)]
        assert client.get("/v1/sessions/keep").json()["history"] == exts([21, 22, 23])  # stored as it was
        assert all(21 <= i <= 30 for i in dense_items(body))  # still the same genre: the ids kept their meaning
    assert all(21 <= i <= 30 for i in dense_items(first))


def test_events_with_iso_timestamps_and_numeric_ids(client: TestClient) -> None:
    events = [{"item_id": ext(2), "timestamp": "2024-01-02T00:00:00Z"}, {"item_id": 1001, "timestamp": "2024-01-01T00:00:00Z"}]
    r = client.post("/v1/sessions/iso/events", json={"events": events})
    assert r.status_code == 200 and r.json()["history"] == exts([1, 2])  # ordered by time, ids as strings
