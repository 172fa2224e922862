"""The app's LLM features, the same tests on each backend: transformers (a tiny random Llama, fast), vLLM
(the real SmolLM2 with the bundle's LoRA adapters and soft prompt loaded) and openai (the same bundle served
by a real vLLM OpenAI server process, conftest.py's, shared with test_openai_backend.py); the last two are
skipped where vLLM is not installed, unless SEQREC_REQUIRE_VLLM=1 as in CI. Both bundles carry a rerank spec, so every request is
also reranked by the LLM unless it says otherwise."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recbundle.base_model import DEFAULT_MODEL_DIR
from service.main import create_app
from service.settings import Settings
from tests.service.bundle_factory import build_bundle
from tests.service.ids import dense, exts
from tests.service.llm.conftest import SPEC, RemoteLLMServer
from tests.service.llm.fixtures import make_lora_adapter, make_soft_prompt
from tests.service.llm.offline_rank import offline_rerank, teacher_top
from tests.service.sse import check_stream, parse_sse

HAVE_VLLM = importlib.util.find_spec("vllm") is not None or os.environ.get("SEQREC_REQUIRE_VLLM") == "1"
BACKENDS = [
    pytest.param("transformers"),
    pytest.param(
        "vllm", marks=[pytest.mark.slow, pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed")]
    ),
    pytest.param(
        "openai",
        marks=[pytest.mark.slow, pytest.mark.remote_llm, pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed")],
    ),
]


def _settings(
    backend: str, tmp: Path, tiny_llm_dir: Path, request: pytest.FixtureRequest | None = None, **overrides: Any
) -> Settings:
    bundle = tmp / "bundle"
    # the real-model backends take the session's bundle (and server) from fixtures
    assert backend == "transformers" or request is not None
    if backend == "openai" and request is not None:  # the session's server holds the session's real bundle: the app serves that bundle
        remote: RemoteLLMServer = request.getfixturevalue("remote_llm")
        bundle = remote.bundle
        values: dict[str, Any] = {"llm_model": str(DEFAULT_MODEL_DIR), "llm_url": remote.url}
    elif backend == "vllm" and request is not None:  # the real model, with the bundle's adapters and soft prompt loaded by the app
        bundle = request.getfixturevalue("real_llm_bundle")
        values = {"llm_model": str(DEFAULT_MODEL_DIR)}
    else:  # tiny: a rerank adapter and soft prompt, no explanation adapter (explanations on base weights)
        if not bundle.exists():
            rerank = make_lora_adapter(tiny_llm_dir, tmp / "rerank", seed=1)
            soft = np.load(make_soft_prompt(tmp / "soft.npy", n_tokens=4, hidden=64))
            build_bundle(bundle, soft_prompt=soft, rerank=SPEC, rerank_adapter=rerank)
        values = {"llm_model": str(tiny_llm_dir)}  # llm_dtype auto: float32, the bundle reranks
    values |= {"bundle_dir": bundle, "llm_backend": backend, "redis_url": None, "explain_max_new_tokens": 12,
               "explain_deadline_ms": 120000, "rerank_deadline_ms": 120000}  # fmt: skip
    return Settings(**(values | overrides))


@pytest.fixture(scope="module", params=BACKENDS)
def app_client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_llm_dir: Path) -> Iterator[tuple[str, TestClient]]:
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"app-{backend}")
    settings = _settings(backend, tmp, tiny_llm_dir, request)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield backend, client


def test_ready_with_the_configured_backend(app_client: tuple[str, TestClient]) -> None:
    backend, client = app_client
    components = client.get("/readyz").json()["components"]
    llm, reranker = components["llm"], components["reranker"]
    assert llm["status"] == "ok" and llm["detail"].startswith(backend) and "(float32)" in llm["detail"]
    assert reranker["status"] == "ok" and reranker["detail"].startswith("20 candidates, adapter rerank")


@pytest.mark.parametrize("history", [[1, 2, 3], [41, 12, 33, 27, 5]])
def test_served_rerank_order_is_the_offline_order(app_client: tuple[str, TestClient], history: list[int]) -> None:
    """Same bundle, same history: the service's answer (k = N) is training's offline ranker's order."""
    _, client = app_client
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    body = client.post("/v1/recommend", json={"history": exts(history), "k": 20, "rerank": True}).json()
    assert body["rerank_status"] == "ok" and body["timings_ms"]["rerank"] > 0, body
    served = [(dense(it["item_id"]), it["score"]) for it in body["items"]]
    offline = offline_rerank(settings.bundle_dir, settings.llm_model, history)
    assert [i for i, _ in served] == [i for i, _ in offline]
    np.testing.assert_allclose([s for _, s in served], [s for _, s in offline], atol=1e-3)
    retrieval = [i for i, _ in teacher_top(settings.bundle_dir, history, 20)]
    assert [i for i, _ in served] != retrieval  # the LLM did reorder
    assert [retrieval[it["retrieval_rank"] - 1] for it in body["items"]] == [i for i, _ in served]


def test_rerank_off_on_and_streamed(app_client: tuple[str, TestClient]) -> None:
    _, client = app_client
    off = client.post("/v1/recommend", json={"history": exts([1, 2]), "k": 5, "rerank": False}).json()
    assert off["rerank_status"] == "disabled" and off["timings_ms"]["rerank"] == 0
    assert [it["retrieval_rank"] for it in off["items"]] == [1, 2, 3, 4, 5]
    default = client.post("/v1/recommend", json={"history": exts([1, 2]), "k": 5}).json()
    assert default["rerank_status"] == "ok"  # on by default: the bundle has a rerank spec
    with client.stream("POST", "/v1/recommend/stream", json={"history": exts([1, 2]), "k": 5}) as r:
        events = parse_sse(r.iter_lines())
    ranking = events[0][1]
    assert ranking["rerank_status"] == "ok" and ranking["items"] == default["items"]
    finals = check_stream(events, k=5)
    assert list(finals) and set(finals) <= {it["item_id"] for it in default["items"]}


def test_concurrent_reranked_and_explained_requests(app_client: tuple[str, TestClient]) -> None:
    """Rerank prefills (soft prompt, rerank adapter) next to explanation decodes, 8 requests at once: every
    answer is reranked and explained, and each equals its answer alone (vLLM #51122 would kill the engine)."""
    _, client = app_client
    bodies = [{"history": exts([1 + u, 11 + u, 21 + u]), "k": 3, "explain": True} for u in range(8)]
    alone = [client.post("/v1/recommend", json={**b, "explain": False}).json() for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda b: client.post("/v1/recommend", json=b).json(), bodies))
    for a, t in zip(alone, together, strict=True):
        assert t["rerank_status"] == "ok" and t["explanation_status"] == "ok", t
        assert [it["item_id"] for it in t["items"]] == [it["item_id"] for it in a["items"]]
    assert client.get("/readyz").json()["ready"]


def test_explanations_are_generated_then_cached(app_client: tuple[str, TestClient]) -> None:
    _, client = app_client
    req = {"history": exts([1, 2]), "k": 3, "explain": True}
    body = client.post("/v1/recommend", json=req).json()
    assert body["explanation_status"] == "ok" and body["timings_ms"]["explain"] > 0
    assert any(it["explanation"] for it in body["items"])
    again = client.post("/v1/recommend", json=req).json()
    assert [it["explanation"] for it in again["items"]] == [it["explanation"] for it in body["items"]]
    assert 'seqrec_explanation_cache_total{result="hit"}' in client.get("/metrics").text


def test_explanations_stream_over_sse(app_client: tuple[str, TestClient]) -> None:
    _, client = app_client
    with client.stream("POST", "/v1/recommend/stream", json={"history": exts([3, 4]), "k": 2}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.iter_lines())
    finals = check_stream(events, k=2)
    assert events[-1][1]["status"] == "ok" and len(finals) == 2
    bad = client.post("/v1/recommend/stream", json={"history": ["99999"]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_items"


def test_metrics_count_tokens_and_pass_promtool(app_client: tuple[str, TestClient]) -> None:
    backend, client = app_client
    client.post("/v1/recommend", json={"history": exts([5, 6]), "k": 2, "explain": True})
    metrics = client.get("/metrics").text
    names = {line.split("{")[0].split(" ")[0] for line in metrics.splitlines() if line and line[0] != "#"}
    assert "seqrec_llm_generated_tokens_total" in names and "seqrec_llm_generated_tokens_total 0.0" not in metrics
    assert 'seqrec_rerank_fallback_total{reason="timeout"}' in metrics
    assert 'seqrec_stage_duration_seconds_count{stage="rerank"}' in metrics
    if backend == "vllm":  # vLLM's own metrics next to ours, renamed so that promtool accepts them
        assert "vllm_generation_tokens_total" in names and not [n for n in names if ":" in n]
    check = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@contextmanager
def explainer_limits(client: TestClient, deadline_ms: int, max_new_tokens: int) -> Iterator[None]:
    """The running app's explainer with another deadline and token budget, restored after: the module's
    app (and its engine: a second vLLM engine costs ~40 s to start) serves the test."""
    explainer = client.app.state.resources.serving.explainer  # type: ignore[attr-defined]
    saved = explainer.deadline_s, explainer.max_new_tokens
    explainer.deadline_s, explainer.max_new_tokens = deadline_ms / 1000, max_new_tokens
    try:
        yield
    finally:
        explainer.deadline_s, explainer.max_new_tokens = saved


def test_explanation_deadline(app_client: tuple[str, TestClient]) -> None:
    _, client = app_client
    req = {"history": exts([17, 18]), "k": 3}  # a history no other test asks about: nothing cached for it
    with explainer_limits(client, deadline_ms=50, max_new_tokens=400):
        body = client.post("/v1/recommend", json={**req, "explain": True}).json()
        assert body["explanation_status"] == "timeout"
        assert len(body["items"]) == 3 and all(it["explanation"] is None for it in body["items"])
        with client.stream("POST", "/v1/recommend/stream", json=req) as r:
            events = parse_sse(r.iter_lines())
        assert events[0][0] == "ranking" and events[-1] == ("explanations_done", {"status": "timeout"})
    again = client.post("/v1/recommend", json={**req, "explain": True}).json()
    assert again["explanation_status"] == "ok"  # the engine recovered: the timed-out work left nothing behind


def test_a_stalled_llm_rerank_falls_back_within_the_deadline(tmp_path: Path, tiny_llm_dir: Path) -> None:
    settings = _settings("transformers", tmp_path, tiny_llm_dir, rerank_deadline_ms=300)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        backend = client.app.state.resources.llm.backend  # type: ignore[attr-defined]

        async def stalled(*args: Any, **kwargs: Any) -> list[float]:
            await asyncio.sleep(10)
            return []

        backend.score_labels = stalled
        req = {"history": exts([1, 2, 3]), "k": 5}
        start = time.perf_counter()
        body = client.post("/v1/recommend", json=req).json()
        assert time.perf_counter() - start < 1.0
        assert body["rerank_status"] == "timeout" and 290 <= body["timings_ms"]["rerank"] < 800
        plain = client.post("/v1/recommend", json={**req, "rerank": False}).json()
        assert body["items"] == plain["items"]  # the retrieval order, retrieval scores
        assert 'seqrec_rerank_fallback_total{reason="timeout"} 1.0' in client.get("/metrics").text
