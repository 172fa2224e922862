"""Session endpoints against a real redis-server."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import ClientFactory, RedisServer


def test_session_lifecycle(redis_client: TestClient, redis_server: RedisServer) -> None:
    r = redis_client.post("/v1/sessions/abc/events", json={"events": [3, {"item_id": 4}]})
    assert r.status_code == 200 and r.json() == {"session_id": "abc", "history": [3, 4], "length": 2}
    redis_client.post("/v1/sessions/abc/events", json={"events": [5]})
    assert redis_client.get("/v1/sessions/abc").json()["history"] == [3, 4, 5]
    assert redis_server.cli("lrange", "seqrec:session:abc", "0", "-1").split() == ["3", "4", "5"]
    assert redis_client.delete("/v1/sessions/abc").status_code == 204
    assert redis_client.get("/v1/sessions/abc").status_code == 404
    assert redis_client.delete("/v1/sessions/abc").status_code == 404


def test_sessions_are_capped_and_expire(
    make_client: ClientFactory, redis_url: str, redis_server: RedisServer
) -> None:
    with make_client(redis_url=redis_url, session_max_len=4, session_ttl_s=100) as client:
        client.post("/v1/sessions/s/events", json={"events": [1, 2, 3]})
        client.post("/v1/sessions/s/events", json={"events": [4, 5, 6]})
        assert client.get("/v1/sessions/s").json()["history"] == [3, 4, 5, 6]
        assert 90 < int(redis_server.cli("ttl", "seqrec:session:s")) <= 100
        redis_server.cli("expire", "seqrec:session:s", "1000")
        client.post("/v1/sessions/s/events", json={"events": [7]})
        assert int(redis_server.cli("ttl", "seqrec:session:s")) <= 100  # refreshed by the event


def test_recommend_uses_the_redis_session(redis_client: TestClient) -> None:
    redis_client.post("/v1/sessions/u/events", json={"events": [21, 22]})
    body = redis_client.post("/v1/recommend", json={"session_id": "u", "history": [23], "k": 4}).json()
    assert redis_client.get("/v1/sessions/u").json()["history"] == [21, 22, 23]
    assert all(21 <= it["item_id"] <= 30 and it["item_id"] not in {21, 22, 23} for it in body["items"])
    assert body["degraded"] is False
