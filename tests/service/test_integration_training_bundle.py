"""End to end: the training code builds the `tiny` preset's bundle (real ML-100K data from ../shared/data),
the real app serves it with a real redis-server, and every endpoint, the Redis-down path and every
bad-input case behave. (The other service tests use a hand-built 50-item fixture bundle.)"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recbundle import load_manifest
from scripts.procs import free_port
from service.api.protocol import RecommendResponse
from service.main import create_app
from service.settings import Settings
from tests.service.conftest import RedisServer

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-100k"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/ml-100k")


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.cli import main  # the test, not the service, drives training

    runs, bundles = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("bundles")
    assert main(["run", "--preset", "tiny", "--output-dir", str(runs), "--export-to", str(bundles)]) == 0
    current = bundles / "current"
    assert current.is_symlink() and load_manifest(current).dataset == "ml-100k"
    return current


@pytest.fixture(scope="module")
def client(trained_bundle: Path, redis_server: RedisServer) -> Iterator[TestClient]:
    settings = Settings(bundle_dir=trained_bundle, redis_url=redis_server.url, llm_backend="none")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["components"]["sessions"]["status"] == "ok"
    assert ready["bundle_id"].startswith("tiny-sasrec-plain-")


def test_items_lookup_and_title_search(client: TestClient) -> None:
    hits = client.get("/v1/items", params={"q": "star wars"}).json()["items"]
    assert hits and "Star Wars" in hits[0]["title"]
    item = client.get(f"/v1/items/{hits[0]['item_id']}").json()
    assert item["title"] == hits[0]["title"] and item["categories"]


def test_recommend_inline_history(client: TestClient) -> None:
    # MovieLens's own movie ids (Toy Story, GoldenEye, Four Rooms, Get Shorty), sent as JSON numbers
    r = client.post("/v1/recommend", json={"history": [1, 2, 3, {"item_id": "4"}], "k": 7})
    assert r.status_code == 200
    body = RecommendResponse.model_validate(r.json())  # the hot path's dict matches the documented schema
    assert [it.rank for it in body.items] == list(range(1, 8))
    assert not {"1", "2", "3", "4"} & {it.item_id for it in body.items}  # exclude_seen
    assert body.explanation_status == "disabled" and body.timings_ms.total > 0
    scores = [it.score for it in body.items]
    assert scores == sorted(scores, reverse=True)


def test_sessions_round_trip_through_redis(client: TestClient, redis_server: RedisServer) -> None:
    assert client.post("/v1/sessions/u-42/events", json={"events": [5, 6]}).json()["length"] == 2
    r = client.post("/v1/recommend", json={"session_id": "u-42", "history": [7], "k": 3})
    assert r.status_code == 200 and r.json()["session_id"] == "u-42"
    assert client.get("/v1/sessions/u-42").json()["history"] == ["5", "6", "7"]
    assert redis_server.cli("exists", "seqrec:session:u-42").strip() == "1"
    assert client.delete("/v1/sessions/u-42").status_code == 204
    assert client.get("/v1/sessions/u-42").status_code == 404


@pytest.mark.parametrize(
    ("kwargs", "status", "hint"),
    [
        ({"json": {"history": [999999]}}, 422, "unknown item ids"),
        ({"json": {"history": []}}, 422, "history is empty"),
        ({"json": {"history": [1], "k": 0}}, 422, "k"),
        ({"json": {"history": [1], "k": 101}}, 422, "k"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "not valid JSON"),
        ({"json": {"history": list(range(1, 300))}}, 422, "at most"),
        ({"content": b"[" + b"1," * 40000 + b"1]", "headers": {"content-type": "application/json"}}, 413, "larger"),
        ({"json": {"session_id": "never-seen"}}, 404, "no events"),
    ],
)
def test_bad_input_gets_a_4xx_that_says_what_to_fix(client: TestClient, kwargs: dict, status: int, hint: str) -> None:  # type: ignore[type-arg]
    r = client.post("/v1/recommend", **kwargs)
    assert r.status_code == status, r.text
    assert hint in r.text


def test_metrics_pass_promtool(client: TestClient) -> None:
    client.post("/v1/recommend", json={"history": [1, 2], "k": 3})
    text = client.get("/metrics").text
    assert "seqrec_stage_duration_seconds_bucket" in text and "seqrec_http_requests_total" in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed"
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_redis_down_still_answers_inline_histories(trained_bundle: Path) -> None:
    settings = Settings(bundle_dir=trained_bundle, redis_url=f"redis://127.0.0.1:{free_port()}/0",
                        redis_timeout_s=0.2, llm_backend="none")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert c.get("/readyz").json()["components"]["sessions"]["status"] == "failing"
        r = c.post("/v1/recommend", json={"session_id": "s", "history": [1, 2], "k": 3})
        assert r.status_code == 200 and r.json()["degraded"] is True
        assert "seqrec_degraded_requests_total" in c.get("/metrics").text


def test_openapi_documents_the_recommend_schemas(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/recommend"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"history", "session_id", "k", "explain", "exclude_seen"} <= set(body["properties"])
    assert body["properties"]["k"]["maximum"] == 100
    assert "HistoryEvent" in spec["components"]["schemas"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("RecommendResponse")
