from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recbundle import BundleError
from service.main import create_app
from tests.service.conftest import ClientFactory


def test_lifespan_opens_and_closes_resources(make_client: ClientFactory) -> None:
    with make_client() as client:
        app = client.app
        assert app.state.resources is not None  # type: ignore[attr-defined]
        assert client.get("/healthz").json() == {"status": "ok"}
    assert app.state.resources is None  # type: ignore[attr-defined]


def test_gil_switch_interval_is_set_while_serving_and_restored(make_client: ClientFactory) -> None:
    before = sys.getswitchinterval()
    with make_client(gil_switch_interval_ms=0.25):
        assert sys.getswitchinterval() == pytest.approx(0.25e-3)
    assert sys.getswitchinterval() == before


def test_settings_built_on_startup_from_env(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQREC_BUNDLE_DIR", str(bundle_dir))
    monkeypatch.setenv("SEQREC_LLM_BACKEND", "none")
    app = create_app()
    assert app.state.settings is None
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        assert app.state.settings.bundle_dir == bundle_dir


def test_tampered_bundle_is_refused_at_startup(
    bundle_dir: Path, tmp_path: Path, make_client: ClientFactory
) -> None:
    tampered = tmp_path / "bundle"
    shutil.copytree(bundle_dir, tampered)
    data = bytearray((tampered / "items.jsonl").read_bytes())
    data[20] = (data[20] + 1) % 256
    (tampered / "items.jsonl").write_bytes(bytes(data))
    with (
        pytest.raises(BundleError, match=r"items.jsonl fails its sha256 check"),
        make_client(bundle_dir=tampered),
    ):
        pass


def test_missing_bundle_is_refused(tmp_path: Path, make_client: ClientFactory) -> None:
    with pytest.raises(BundleError, match="manifest.json is missing"), make_client(bundle_dir=tmp_path):
        pass


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ["/v1/recommend", "/v1/sessions/{session_id}/events", "/v1/items", "/v1/items/{item_id}"]:
        assert path in paths


def test_openapi_documents_the_rerank_fields(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path in ("/v1/recommend", "/v1/recommend/stream"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        rerank = body["properties"]["rerank"]
        assert {t.get("type") for t in rerank["anyOf"]} == {"boolean", "null"} and "n_candidates" in rerank["description"]
    response = schemas["RecommendResponse"]
    assert "rerank_status" in response["required"]
    assert set(response["properties"]["rerank_status"]["enum"]) == {"ok", "timeout", "error", "unavailable", "disabled"}
    assert "rerank" in schemas["Timings"]["required"]
    item = schemas["RecommendedItem"]["properties"]
    assert "retrieval_rank" in item and "lambda" in item["score"]["description"]
