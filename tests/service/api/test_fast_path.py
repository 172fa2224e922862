"""POST /v1/recommend is answered by an ASGI fast path in front of FastAPI; the framework route behind it
must stay equivalent (it documents the route and serves it if the fast path is removed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.recommend import RecommendFastPath
from service.main import create_app
from service.settings import Settings
from tests.service.ids import ext, exts

CASES: list[tuple[str, Any]] = [
    ("ok", {"history": exts([1, 2, 3]), "k": 5}),
    ("events", {"history": [{"item_id": ext(3), "timestamp": 2}, {"item_id": ext(1), "timestamp": 1}], "k": 3}),
    ("no_seen_filter", {"history": exts([1, 2]), "k": 4, "exclude_seen": False}),
    ("rerank", {"history": exts([1, 2]), "k": 3, "rerank": True}),
    ("rerank_null", {"history": exts([1, 2]), "rerank": None}),
    ("rerank_bad", {"history": exts([1]), "rerank": "maybe"}),
    ("unknown_items", {"history": exts([1, 99999])}),
    ("empty", {"history": []}),
    ("k_range", {"history": exts([1]), "k": 0}),
    ("extra_field", {"history": exts([1]), "kk": 3}),
    ("session_missing", {"session_id": "nobody-here"}),
    ("malformed", b'{"history": [1, 2'),
    ("not_json", b"history=1"),
]


@pytest.fixture
def framework_client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    app = create_app(make_settings())
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RecommendFastPath]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _post(client: TestClient, body: Any, **kw: Any) -> Any:
    if isinstance(body, bytes):
        return client.post("/v1/recommend", content=body, headers={"content-type": "application/json"}, **kw)
    return client.post("/v1/recommend", json=body, **kw)


def _comparable(r: Any) -> tuple[int, Any]:
    body = r.json()
    body.pop("timings_ms", None)
    return r.status_code, body


@pytest.mark.parametrize(("name", "body"), CASES, ids=[c[0] for c in CASES])
def test_fast_path_answers_like_the_framework_route(
    client: TestClient, framework_client: TestClient, name: str, body: Any
) -> None:
    fast, slow = _post(client, body), _post(framework_client, body)
    assert fast.headers["content-type"] == "application/json"
    assert _comparable(fast) == _comparable(slow), name


def test_fast_path_counts_requests_under_the_route_template(client: TestClient) -> None:
    _post(client, {"history": exts([1])})
    _post(client, {"history": []})
    text = client.get("/metrics").text
    assert 'seqrec_http_requests_total{method="POST",route="/v1/recommend",status="200"} 1.0' in text
    assert 'seqrec_http_requests_total{method="POST",route="/v1/recommend",status="422"} 1.0' in text


def test_other_methods_and_paths_still_go_through_the_framework(client: TestClient) -> None:
    assert client.get("/v1/recommend").status_code == 405
    assert client.get("/openapi.json").json()["paths"]["/v1/recommend"]["post"]["requestBody"]["required"]


def test_fast_path_refuses_with_503_while_not_ready(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    client = TestClient(app, raise_server_exceptions=False)  # not entered: the lifespan has not run
    r = client.post("/v1/recommend", json={"history": exts([1])})
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
