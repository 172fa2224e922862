from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.ids import dense_items, ext, exts

COMEDIES = list(range(1, 11))


def test_recommend_returns_ranked_items(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": exts([1, 2, 3]), "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bundle_id"] == "test-meanpool-0000"
    assert [it["rank"] for it in body["items"]] == [1, 2, 3, 4, 5]
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(it["item_id"], str) for it in body["items"])  # the catalogue's ids
    assert set(dense_items(body)) <= set(COMEDIES)  # the comedy cluster
    assert not {1, 2, 3} & set(dense_items(body))
    assert body["explanation_status"] == "disabled"
    assert all(it["explanation"] is None for it in body["items"])
    assert set(body["timings_ms"]) == {"encode", "search", "rerank", "explain", "total"}
    assert body["rerank_status"] == "disabled"  # the fixture bundle has no rerank spec
    assert [it["retrieval_rank"] for it in body["items"]] == [1, 2, 3, 4, 5]
    assert body["session_id"] is None and body["degraded"] is False and body["ignored_items"] == []


def test_alias_route_and_integer_ids(client: TestClient) -> None:
    """POST /recommend is the same route; numeric catalogue ids may be sent as JSON integers."""
    a = client.post("/v1/recommend", json={"history": exts([1, 2, 3]), "k": 5}).json()
    b = client.post("/recommend", json={"history": [1001, 1002, 1003], "k": 5})
    assert b.status_code == 200, b.text
    assert dense_items(b.json()) == dense_items(a)


def test_exclude_seen_false_may_return_history(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": exts([1, 2, 3]), "k": 10, "exclude_seen": False})
    assert {1, 2, 3} <= set(dense_items(r.json()))


def test_k_items_even_when_history_covers_the_top(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": exts(COMEDIES), "k": 40})
    ids = dense_items(r.json())
    assert len(ids) == 40 and not set(ids) & set(COMEDIES)


def test_k_larger_than_unseen_catalogue(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"history": exts(range(1, 46)), "k": 100})
    assert sorted(dense_items(r.json())) == [46, 47, 48, 49, 50]


def test_event_objects_are_ordered_by_timestamp(client: TestClient) -> None:
    # newest last: one comedy long ago, then dramas; only the last max_len=20 are encoded, all count as seen
    events = [{"item_id": ext(11 + i), "timestamp": 100 + i} for i in range(5)] + [
        {"item_id": ext(1), "timestamp": 1}
    ]
    r = client.post("/v1/recommend", json={"history": events, "k": 3})
    assert r.status_code == 200
    assert all(11 <= i <= 20 for i in dense_items(r.json()))


def test_iso_timestamps(client: TestClient) -> None:
    events = [
        {"item_id": ext(41), "timestamp": "2024-01-01T00:00:00Z"},
        {"item_id": ext(42), "timestamp": "2024-01-02T00:00:00Z"},
    ]
    assert client.post("/v1/recommend", json={"history": events, "k": 2}).status_code == 200


def test_session_accumulates_history(client: TestClient) -> None:
    first = client.post("/v1/recommend", json={"session_id": "u1", "history": exts([41]), "k": 3}).json()
    assert first["session_id"] == "u1"
    client.post("/v1/recommend", json={"session_id": "u1", "history": exts([42, 43]), "k": 3})
    assert client.get("/v1/sessions/u1").json()["history"] == exts([41, 42, 43])  # stored as catalogue ids
    # no inline history: the stored one is used, and its items are excluded
    r = client.post("/v1/recommend", json={"session_id": "u1", "k": 5}).json()
    assert not {41, 42, 43} & set(dense_items(r))
    assert all(41 <= i <= 50 for i in dense_items(r))
