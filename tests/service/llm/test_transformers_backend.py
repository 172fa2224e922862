"""TransformersBackend on a tiny random Llama; one slow test on the real converted SmolLM2."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
from service.llm.transformers_backend import TransformersBackend
from tests.service.conftest import ClientFactory


@pytest.fixture(scope="module")
def tiny(tiny_llm_dir: Path) -> TransformersBackend:
    return TransformersBackend.load(str(tiny_llm_dir), dtype="float32")


def test_batched_generation(tiny: TransformersBackend) -> None:
    prompts = [tiny.render("sys", "short"), tiny.render("sys", "a much longer user message " * 5)]
    assert prompts[0].startswith("<|im_start|>system")  # SmolLM2's chat template
    gen = tiny.generate(prompts, max_new_tokens=6, deadline=time.monotonic() + 30)
    assert len(gen.texts) == 2 and 0 < gen.new_tokens <= 12 and not gen.stopped_early


def test_deadline_stops_generation(tiny: TransformersBackend) -> None:
    start = time.monotonic()
    gen = tiny.generate([tiny.render("s", "u")], max_new_tokens=500, deadline=start + 0.05)
    assert gen.stopped_early and time.monotonic() - start < 2.0


def test_app_explains_with_the_tiny_model(
    make_client: ClientFactory, tiny_llm_dir: Path, redis_url: str
) -> None:
    settings = {
        "llm_backend": "transformers",
        "llm_model": str(tiny_llm_dir),
        "llm_dtype": "float32",
        "explain_max_new_tokens": 8,
        "explain_deadline_ms": 30000,
        "redis_url": redis_url,
    }
    with make_client(**settings) as client:
        assert client.get("/readyz").json()["components"]["llm"]["status"] == "ok"
        req = {"history": [1, 2], "k": 3, "explain": True}
        body = client.post("/v1/recommend", json=req).json()
        assert body["explanation_status"] == "ok"
        assert body["timings_ms"]["explain"] > 0
        again = client.post("/v1/recommend", json=req).json()
        assert [it["explanation"] for it in again["items"]] == [it["explanation"] for it in body["items"]]
        metrics = client.get("/metrics").text
        assert 'seqrec_explanation_cache_total{result="hit"}' in metrics
        assert "seqrec_llm_generated_tokens_total 0.0" not in metrics


def test_app_explanation_timeout(make_client: ClientFactory, tiny_llm_dir: Path) -> None:
    settings = {
        "llm_backend": "transformers",
        "llm_model": str(tiny_llm_dir),
        "explain_max_new_tokens": 400,
        "explain_deadline_ms": 50,
    }
    with make_client(**settings) as client:
        body = client.post("/v1/recommend", json={"history": [1, 2], "k": 3, "explain": True}).json()
        assert body["explanation_status"] == "timeout"
        assert len(body["items"]) == 3 and all(it["explanation"] is None for it in body["items"])


@pytest.mark.slow
def test_real_smollm2_names_a_history_title(make_client: ClientFactory) -> None:
    """The converted SmolLM2-135M-Instruct (bf16, from PyPI's GGUF) cites the user's history by title."""
    convert_smollm2(DEFAULT_MODEL_DIR)
    settings = {"llm_backend": "transformers", "explain_deadline_ms": 120000, "explain_max_new_tokens": 48}
    with make_client(**settings) as client:
        history = [41, 43, 47]  # Toy Story, The Lion King, Dumbo
        body = client.post("/v1/recommend", json={"history": history, "k": 3, "explain": True}).json()
    assert body["explanation_status"] == "ok", body
    texts = [it["explanation"] for it in body["items"] if it["explanation"]]
    assert texts, body
    cited = [t for t in texts if any(name in t for name in ("Toy Story", "Lion King", "Dumbo"))]
    assert cited, texts
