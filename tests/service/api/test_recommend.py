from __future__ import annotations

from fastapi.testclient import TestClient

COMEDIES = list(range(1, 11))


def test_recommend_returns_ranked_items(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": [1, 2, 3], "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bundle_id"] == "test-meanpool-0000"
    assert [it["rank"] for it in body["items"]] == [1, 2, 3, 4, 5]
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(it["item_id"] in COMEDIES for it in body["items"])  # the comedy cluster
    assert not {1, 2, 3} & {it["item_id"] for it in body["items"]}
    assert body["explanation_status"] == "disabled"
    assert all(it["explanation"] is None for it in body["items"])
    assert set(body["timings_ms"]) == {"encode", "search", "rerank", "explain", "total"}
    assert body["rerank_status"] == "disabled"  # the fixture bundle has no rerank spec
    assert [it["retrieval_rank"] for it in body["items"]] == [1, 2, 3, 4, 5]
    assert body["session_id"] is None and body["degraded"] is False


def test_exclude_seen_false_may_return_history(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": [1, 2, 3], "k": 10, "exclude_seen": False})
    assert {1, 2, 3} <= {it["item_id"] for it in r.json()["items"]}


def test_k_items_even_when_history_covers_the_top(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": COMEDIES, "k": 40})
    ids = [it["item_id"] for it in r.json()["items"]]
    assert len(ids) == 40 and not set(ids) & set(COMEDIES)


def test_k_larger_than_unseen_catalogue(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": list(range(1, 46)), "k": 100})
    assert sorted(it["item_id"] for it in r.json()["items"]) == [46, 47, 48, 49, 50]


def test_event_objects_are_ordered_by_timestamp(client: TestClient) -> None:
    # newest last: one comedy long ago, then dramas; only the last max_len=20 are encoded, all count as seen
    events = [{"item_id": 11 + i, "timestamp": 100 + i} for i in range(5)] + [{"item_id": 1, "timestamp": 1}]
    r = client.post("/v1/recommend", json={"history": events, "k": 3})
    assert r.status_code == 200
    assert all(11 <= it["item_id"] <= 20 for it in r.json()["items"])


def test_iso_timestamps(client: TestClient) -> None:
    events = [
        {"item_id": 41, "timestamp": "2024-01-01T00:00:00Z"},
        {"item_id": 42, "timestamp": "2024-01-02T00:00:00Z"},
    ]
    assert client.post("/v1/recommend", json={"history": events, "k": 2}).status_code == 200


def test_session_accumulates_history(client: TestClient) -> None:
    first = client.post("/v1/recommend", json={"session_id": "u1", "history": [41], "k": 3}).json()
    assert first["session_id"] == "u1"
    client.post("/v1/recommend", json={"session_id": "u1", "history": [42, 43], "k": 3})
    assert client.get("/v1/sessions/u1").json()["history"] == [41, 42, 43]
    # no inline history: the stored one is used, and its items are excluded
    r = client.post("/v1/recommend", json={"session_id": "u1", "k": 5}).json()
    assert not {41, 42, 43} & {it["item_id"] for it in r["items"]}
    assert all(41 <= it["item_id"] <= 50 for it in r["items"])
