"""The app's LLM features, the same tests on each backend: transformers (a tiny random Llama, fast) and
vLLM (the real SmolLM2 with the bundle's LoRA adapter and soft prompt loaded; skipped where vLLM is not
installed, unless SEQREC_REQUIRE_VLLM=1 as in CI)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
from service.main import create_app
from service.settings import Settings
from tests.service.bundle_factory import build_bundle
from tests.service.llm.fixtures import make_lora_adapter, make_soft_prompt
from tests.service.sse import check_stream, parse_sse

HAVE_VLLM = importlib.util.find_spec("vllm") is not None or os.environ.get("SEQREC_REQUIRE_VLLM") == "1"
BACKENDS = [
    pytest.param("transformers"),
    pytest.param(
        "vllm", marks=[pytest.mark.slow, pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed")]
    ),
]


def _settings(backend: str, tmp: Path, tiny_llm_dir: Path, **overrides: Any) -> Settings:
    bundle = tmp / "bundle"
    if backend == "vllm":  # the real model, with the bundle's adapter and soft prompt loaded by the app
        convert_smollm2(DEFAULT_MODEL_DIR)
        if not bundle.exists():
            adapter = make_lora_adapter(DEFAULT_MODEL_DIR, tmp / "lora")
            build_bundle(bundle, lora_adapter=adapter, soft_prompt=np.load(make_soft_prompt(tmp / "soft.npy")))
        values: dict[str, Any] = {"llm_model": str(DEFAULT_MODEL_DIR)}
    else:
        if not bundle.exists():
            build_bundle(bundle)
        values = {"llm_model": str(tiny_llm_dir), "llm_dtype": "float32"}
    values |= {"bundle_dir": bundle, "llm_backend": backend, "redis_url": None, "explain_max_new_tokens": 12,
               "explain_deadline_ms": 120000}  # fmt: skip
    return Settings(**(values | overrides))


@pytest.fixture(scope="module", params=BACKENDS)
def app_client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_llm_dir: Path) -> Iterator[tuple[str, TestClient]]:
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"app-{backend}")
    with TestClient(create_app(_settings(backend, tmp, tiny_llm_dir)), raise_server_exceptions=False) as client:
        yield backend, client


def test_ready_with_the_configured_backend(app_client: tuple[str, TestClient]) -> None:
    backend, client = app_client
    llm = client.get("/readyz").json()["components"]["llm"]
    assert llm["status"] == "ok" and llm["detail"].startswith(backend)


def test_explanations_are_generated_then_cached(app_client: tuple[str, TestClient]) -> None:
    _, client = app_client
    req = {"history": [1, 2], "k": 3, "explain": True}
    body = client.post("/v1/recommend", json=req).json()
    assert body["explanation_status"] == "ok" and body["timings_ms"]["explain"] > 0
    assert any(it["explanation"] for it in body["items"])
    again = client.post("/v1/recommend", json=req).json()
    assert [it["explanation"] for it in again["items"]] == [it["explanation"] for it in body["items"]]
    assert 'seqrec_explanation_cache_total{result="hit"}' in client.get("/metrics").text


def test_explanations_stream_over_sse(app_client: tuple[str, TestClient]) -> None:
    _, client = app_client
    with client.stream("POST", "/v1/recommend/stream", json={"history": [3, 4], "k": 2}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.iter_lines())
    finals = check_stream(events, k=2)
    assert events[-1][1]["status"] == "ok" and len(finals) == 2
    bad = client.post("/v1/recommend/stream", json={"history": [99999]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_items"


def test_metrics_count_tokens_and_pass_promtool(app_client: tuple[str, TestClient]) -> None:
    backend, client = app_client
    client.post("/v1/recommend", json={"history": [5, 6], "k": 2, "explain": True})
    metrics = client.get("/metrics").text
    names = {line.split("{")[0].split(" ")[0] for line in metrics.splitlines() if line and line[0] != "#"}
    assert "seqrec_llm_generated_tokens_total" in names and "seqrec_llm_generated_tokens_total 0.0" not in metrics
    if backend == "vllm":  # vLLM's own metrics next to ours, renamed so that promtool accepts them
        assert "vllm_generation_tokens_total" in names and not [n for n in names if ":" in n]
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_explanation_deadline(backend: str, tmp_path: Path, tiny_llm_dir: Path) -> None:
    settings = _settings(backend, tmp_path, tiny_llm_dir, explain_max_new_tokens=400, explain_deadline_ms=50)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        body = client.post("/v1/recommend", json={"history": [1, 2], "k": 3, "explain": True}).json()
        assert body["explanation_status"] == "timeout"
        assert len(body["items"]) == 3 and all(it["explanation"] is None for it in body["items"])
        with client.stream("POST", "/v1/recommend/stream", json={"history": [1, 2], "k": 3}) as r:
            events = parse_sse(r.iter_lines())
        assert events[0][0] == "ranking" and events[-1] == ("explanations_done", {"status": "timeout"})
