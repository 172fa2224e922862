"""Every bad input gets a 4xx in the one error shape ({"error": {code, message, details}}) whose message says
what to fix; never a 500, never the framework's own {"detail": ...}."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import ClientFactory
from tests.service.ids import ext


def error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}, r.text
    err: dict[str, Any] = r.json()["error"]
    assert set(err) == {"code", "message", "details"} and err["message"] and err["code"]
    return err


def test_unknown_item_ids(client: TestClient) -> None:
    err = error(client.post("/v1/recommend", json={"history": [ext(1), "999", "0", 7]}), 422)
    assert err["code"] == "unknown_items"
    assert err["details"]["unknown"] == ["999", "0", "7"]  # dense ids are not catalogue ids
    assert "catalogue's own item ids" in err["message"]


@pytest.mark.parametrize("item", [-3, 2**70, 1.5, True, None, "", "has space", "x" * 65, [1]])
def test_item_ids_outside_the_schema(client: TestClient, item: object) -> None:
    err = error(client.post("/v1/recommend", json={"history": [ext(1), item]}), 422)
    assert err["code"] == "invalid_request" and err["details"][0]["field"].startswith("history")


def test_integer_beyond_64_bits_in_any_field(client: TestClient) -> None:
    for body in ({"history": [ext(1)], "k": 2**70}, {"events": [2**70]}):
        url = "/v1/recommend" if "history" in body else "/v1/sessions/s/events"
        error(client.post(url, json=body), 422)


def test_empty_history_without_session(client: TestClient) -> None:
    err = error(client.post("/v1/recommend", json={"history": []}), 422)
    assert "history is empty" in err["message"]
    error(client.post("/v1/recommend", json={}), 422)


def test_unknown_session_without_history(client: TestClient) -> None:
    err = error(client.post("/v1/recommend", json={"session_id": "nobody"}), 404)
    assert "send a history" in err["message"]


@pytest.mark.parametrize("k", [0, 101, -1, "ten", 2.5])
def test_k_out_of_range(client: TestClient, k: object) -> None:
    err = error(client.post("/v1/recommend", json={"history": [ext(1)], "k": k}), 422)
    assert err["details"][0]["field"] == "k"


@pytest.mark.parametrize("body", [b"{bad json", b"", b"[1, 2]", b'{"history": [1,]}', b"\xff\xfe"])
@pytest.mark.parametrize("url", ["/v1/recommend", "/recommend", "/v1/recommend/stream", "/v1/sessions/s/events"])
def test_malformed_json(client: TestClient, body: bytes, url: str) -> None:
    r = client.post(url, content=body, headers={"content-type": "application/json"})
    error(r, 422)


def test_wrong_types_and_unknown_fields(client: TestClient) -> None:
    assert "history" in error(client.post("/v1/recommend", json={"history": "1,2"}), 422)["message"]
    assert "histroy" in error(client.post("/v1/recommend", json={"histroy": [ext(1)]}), 422)["message"]
    error(client.post("/v1/recommend", json={"history": [{"item": ext(1)}]}), 422)


def test_oversized_history(make_client: ClientFactory) -> None:
    with make_client(max_history=30) as client:
        err = error(client.post("/v1/recommend", json={"history": [ext(1)] * 31}), 422)
        assert "at most 30" in err["message"] and "most recent 30" in err["message"]
        assert client.post("/v1/recommend", json={"history": [ext(1)] * 30}).status_code == 200
        error(client.post("/v1/sessions/s/events", json={"events": [ext(1)] * 31}), 422)
        doc = client.get("/openapi.json").json()  # the limit is in the schema
        body = doc["paths"]["/v1/recommend"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["history"]["maxItems"] == 30
        assert doc["components"]["schemas"]["EventsRequest"]["properties"]["events"]["maxItems"] == 30


def test_oversized_body(make_client: ClientFactory) -> None:
    with make_client(max_body_bytes=1024) as client:
        big = {"history": [ext(1)] * 600}
        err = error(client.post("/v1/recommend", json=big), 413)
        assert "1024 bytes" in err["message"]


def test_oversized_body_without_content_length(make_client: ClientFactory) -> None:
    def chunks() -> Any:
        yield b'{"history": ['
        for _ in range(600):
            yield b"1, "
        yield b"1]}"

    with make_client(max_body_bytes=1024) as client:
        r = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
        error(r, 413)


def test_mixed_timestamps(client: TestClient) -> None:
    body = {"history": [{"item_id": ext(1), "timestamp": 5}, ext(2)]}
    err = error(client.post("/v1/recommend", json=body), 422)
    assert "timestamp on every history event or on none" in err["message"]


@pytest.mark.parametrize("sid", ["has space", "x" * 129, "semi;colon"])
def test_bad_session_id(client: TestClient, sid: str) -> None:
    error(client.post("/v1/recommend", json={"history": [ext(1)], "session_id": sid}), 422)
    error(client.get(f"/v1/sessions/{sid}"), 422)


def test_events_request_validation(client: TestClient) -> None:
    error(client.post("/v1/sessions/s1/events", json={"events": []}), 422)
    assert error(client.post("/v1/sessions/s1/events", json={"events": ["77"]}), 422)["code"] == "unknown_items"
    error(client.get("/v1/sessions/s1"), 404)  # nothing was stored by the refused requests


def test_items_bad_input(client: TestClient) -> None:
    assert "not in the catalogue" in error(client.get(f"/v1/items/{ext(51)}"), 404)["message"]
    error(client.get("/v1/items/1"), 404)  # a dense id is not a catalogue id
    error(client.get("/v1/items/" + "x" * 65), 422)
    error(client.get("/v1/items"), 422)  # q is required
    error(client.get("/v1/items", params={"q": "a", "limit": 0}), 422)


def test_unknown_route_and_method(client: TestClient) -> None:
    assert error(client.get("/v1/nope"), 404)["code"] == "not_found"
    r = client.get("/v1/recommend")
    assert error(r, 405)["code"] == "method_not_allowed" and r.headers["allow"] == "POST"
    r = client.put("/v1/sessions/s1")  # two routes serve this path: the Allow header names both
    assert error(r, 405) and r.headers["allow"] == "DELETE, GET"


def test_a_large_body_gets_a_readable_413_from_a_real_server(live_server: str) -> None:
    """Over a real socket: the 5 MB body is refused with a 413 the client reads, not a connection reset."""
    big = b'{"history": [' + b'"1001",' * 700_000 + b'"1001"]}'
    r = httpx.post(live_server + "/v1/recommend", content=big, headers={"content-type": "application/json"})
    assert error(r, 413)["code"] == "body_too_large"


@pytest.mark.parametrize("value", ["maybe", 2, [True], {"on": True}])
def test_rerank_must_be_a_boolean_or_null(client: TestClient, value: object) -> None:
    err = error(client.post("/v1/recommend", json={"history": [ext(1)], "rerank": value}), 422)
    assert err["code"] == "invalid_request" and err["details"][0]["field"] == "rerank"


def test_rerank_without_a_ranker_in_the_bundle_is_served_unreranked(client: TestClient) -> None:
    body = client.post("/v1/recommend", json={"history": [ext(1)], "k": 3, "rerank": True}).json()
    assert body["rerank_status"] == "disabled" and len(body["items"]) == 3
