"""Scopes on every route class (the ASGI fast path and framework routes), open ops paths, error shape,
headers, metrics and the OpenAPI description."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from tests.service.auth.conftest import HISTORY, ITEM, Keys

# (method, path, json body, scope needed, status with a key that has the scope)
ROUTES: list[tuple[str, str, Any, str, int]] = [
    ("POST", "/v1/recommend", {"history": HISTORY, "k": 3}, "recommend", 200),  # the ASGI fast path
    ("POST", "/v1/recommend/stream", {"history": HISTORY, "k": 3}, "recommend", 200),
    ("POST", "/recommend", {"history": HISTORY, "k": 3}, "recommend", 200),  # alias, also on the fast path
    ("GET", "/v1/items?q=the", None, "recommend", 200),
    ("GET", f"/v1/items/{ITEM}", None, "recommend", 200),
    ("POST", "/v1/sessions/s1/events", {"events": HISTORY}, "sessions", 200),
    ("DELETE", "/v1/sessions/nobody", None, "sessions", 404),
    ("GET", "/v1/admin/bundles", None, "admin", 404),  # no admin route yet: past auth, the router's 404
]
IDS = [f"{m} {p}" for m, p, *_ in ROUTES]
WRONG_KEY = {"recommend": "sess", "sessions": "ops", "admin": "reco"}
RIGHT_KEY = {"recommend": "reco", "sessions": "sess", "admin": "ops"}


def _call(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, str] | None = None
) -> Any:
    return client.request(method, path, json=body, headers=headers or {})


def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code and set(r.json()) == {"error"}
    return error


@pytest.mark.parametrize(("method", "path", "body", "scope", "ok"), ROUTES, ids=IDS)
def test_each_route_needs_a_known_key_with_its_scope(
    auth_client: TestClient, keys: Keys, method: str, path: str, body: Any, scope: str, ok: int
) -> None:
    r = _call(auth_client, method, path, body)
    assert "API key" in _error(r, 401, "unauthorized")["message"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = _call(auth_client, method, path, body, {"Authorization": "Bearer not-a-configured-key"})
    assert "unknown API key" in _error(r, 401, "unauthorized")["message"]
    wrong = WRONG_KEY[scope]
    error = _error(_call(auth_client, method, path, body, keys.header(wrong)), 403, "forbidden")
    assert f"'{scope}' scope" in error["message"] and f"'{wrong}'" in error["message"]
    assert error["details"]["needed_scope"] == scope
    for name in (RIGHT_KEY[scope], "all"):
        for headers in (keys.header(name), {"X-API-Key": keys.raw[name]}):
            r = _call(auth_client, method, path, body, headers)
            assert r.status_code == ok, r.text


def test_the_bearer_scheme_is_case_insensitive_and_other_schemes_are_not_keys(
    auth_client: TestClient, keys: Keys
) -> None:
    path = f"/v1/items/{ITEM}"
    assert auth_client.get(path, headers={"Authorization": f"bearer {keys.raw['reco']}"}).status_code == 200
    assert auth_client.get(path, headers={"Authorization": f"Basic {keys.raw['reco']}"}).status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_ops_and_docs_paths_stay_open(auth_client: TestClient, path: str) -> None:
    assert auth_client.get(path).status_code == 200


def test_paths_outside_the_table_need_a_key_but_no_scope(auth_client: TestClient, keys: Keys) -> None:
    _error(auth_client.get("/v2/anything"), 401, "unauthorized")
    assert auth_client.get("/v2/anything", headers=keys.header("sess")).status_code == 404
    # a prefix matches whole path segments only
    _error(auth_client.get("/v1/recommendations"), 401, "unauthorized")
    assert auth_client.get("/v1/recommendations", headers=keys.header("ops")).status_code == 404


def test_refusals_are_counted_by_reason(auth_client: TestClient, keys: Keys) -> None:
    path = f"/v1/items/{ITEM}"
    auth_client.get(path)
    auth_client.get(path, headers={"X-API-Key": "nope"})
    auth_client.get(path, headers={"X-API-Key": "nope"})
    auth_client.get(path, headers=keys.header("sess"))
    text = auth_client.get("/metrics").text
    assert 'seqrec_auth_rejected_total{reason="missing"} 1.0' in text
    assert 'seqrec_auth_rejected_total{reason="unknown"} 2.0' in text
    assert 'seqrec_auth_rejected_total{reason="scope"} 1.0' in text


def test_protected_paths_get_503_before_the_keys_are_loaded(
    make_settings: Callable[..., Settings], keys: Keys
) -> None:
    client = TestClient(create_app(make_settings(api_keys=keys.entries)), raise_server_exceptions=False)
    r = client.get(f"/v1/items/{ITEM}", headers=keys.header("all"))  # not entered: the lifespan has not run
    _error(r, 503, "not_ready")


def test_openapi_declares_the_schemes_and_the_refusals(auth_client: TestClient) -> None:
    schema = auth_client.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    assert "ErrorResponse" in schema["components"]["schemas"]
    for path, method in [
        ("/v1/recommend", "post"),
        ("/v1/sessions/{session_id}", "get"),
        ("/v1/items", "get"),
    ]:
        op = schema["paths"][path][method]
        assert op["security"] == [{"bearer": []}, {"apiKey": []}]
        for status in ("401", "403", "429"):
            ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ErrorResponse"
        assert "Retry-After" in op["responses"]["429"]["headers"]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "security" not in schema["paths"]["/readyz"]["get"]


def test_websocket_connections_are_refused(auth_client: TestClient, keys: Keys) -> None:
    from starlette.websockets import WebSocketDisconnect

    with (
        pytest.raises(WebSocketDisconnect) as e,
        auth_client.websocket_connect("/v1/recommend", headers=keys.header("all")),
    ):
        pass
    assert e.value.code == 1008


def test_an_open_api_declares_no_security(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert all("security" not in op for ops in schema["paths"].values() for op in ops.values())
