from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from scripts.procs import free_port
from tests.service.conftest import ClientFactory, RedisServer
from tests.service.ids import dense_items, exts


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_every_component(redis_client: TestClient) -> None:
    r = redis_client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True and body["bundle_id"] == "test-meanpool-0000"
    states = {name: c["status"] for name, c in body["components"].items()}
    assert states == {"bundle": "ok", "index": "ok", "sessions": "ok", "llm": "disabled", "reranker": "disabled"}
    assert body["components"]["sessions"]["detail"] == "redis" and body["degraded"] == []


def test_readyz_stays_ready_but_degraded_when_redis_is_down(make_client: ClientFactory) -> None:
    """Redis down does not stop ranking inline histories: an orchestrator must keep the replica."""
    with make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout_s=0.2) as client:
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json()["ready"] is True and r.json()["degraded"] == ["sessions"]
        sessions = r.json()["components"]["sessions"]
        assert sessions["status"] == "failing" and "Redis" in sessions["detail"]
        metrics = client.get("/metrics").text
        assert 'seqrec_component_failing{component="sessions"} 1.0' in metrics
        assert 'seqrec_component_failing{component="index"} 0.0' in metrics
        assert client.post("/v1/recommend", json={"history": exts([1, 2]), "k": 3}).status_code == 200


def test_readyz_degraded_when_llm_failed_to_load(make_client: ClientFactory, tmp_path: object) -> None:
    with make_client(llm_backend="transformers", llm_model="/nonexistent/model", llm_required=False) as client:
        r = client.get("/readyz")
        assert r.status_code == 200 and "llm" in r.json()["degraded"]
        assert r.json()["components"]["llm"]["status"] == "failing"
        # the ranking path still works; explanations say why they are missing
        body = client.post("/v1/recommend", json={"history": exts([1]), "k": 2, "explain": True}).json()
        assert len(body["items"]) == 2 and body["explanation_status"] == "unavailable"


def test_redis_stopped_while_serving(make_client: ClientFactory) -> None:
    server = RedisServer().start()
    try:
        with make_client(redis_url=server.url, redis_timeout_s=0.2) as client:
            assert client.post("/v1/sessions/s/events", json={"events": exts([1])}).status_code == 200
            server.stop()
            r = client.post("/v1/recommend", json={"session_id": "s", "history": exts([2, 3]), "k": 3})
            assert r.status_code == 200 and r.json()["degraded"] is True
            assert all(1 <= i <= 10 for i in dense_items(r.json()))
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["degraded"] == ["sessions"]
    finally:
        server.stop()


def test_a_named_backend_that_cannot_start_stops_the_service(make_client: ClientFactory) -> None:
    from service.llm.loader import LLMStartupError

    with (
        pytest.raises(LLMStartupError, match="SEQREC_LLM_BACKEND=none"),
        make_client(llm_backend="transformers", llm_model="/nonexistent/model"),
    ):
        pass


def test_not_ready_only_without_a_ranking_path() -> None:
    import asyncio

    from service.core.health import RANKING_PATH, readiness

    report = asyncio.run(readiness(None))  # the bundle never loaded
    assert report.ready is False and report.components["bundle"].status == "failing"
    assert RANKING_PATH == ("bundle", "index")
