from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.metrics.registry import LATENCY_BUCKETS, Metrics
from tests.service.ids import ext, exts


def families(client: TestClient) -> dict[str, object]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def test_exposition_parses_and_has_the_service_metrics(client: TestClient) -> None:
    client.post("/v1/recommend", json={"history": exts([1, 2]), "k": 3})
    client.post("/v1/recommend", json={"history": exts([999])})
    client.get(f"/v1/items/{ext(12)}")
    fams = families(client)
    for name in [
        "seqrec_http_requests",
        "seqrec_http_request_duration_seconds",
        "seqrec_stage_duration_seconds",
        "seqrec_explanation_cache",
        "seqrec_llm_generated_tokens",
        "seqrec_explanation_timeouts",
        "seqrec_redis_errors",
        "seqrec_degraded_requests",
        "seqrec_bundle_info",
    ]:
        assert name in fams, name
    text = client.get("/metrics").text
    assert 'seqrec_http_requests_total{method="POST",route="/v1/recommend",status="200"} 1.0' in text
    assert 'seqrec_http_requests_total{method="POST",route="/v1/recommend",status="422"} 1.0' in text
    assert 'route="/v1/items/{item_id}"' in text  # templates, not raw paths
    assert 'seqrec_stage_duration_seconds_count{stage="encode"} 1.0' in text
    assert 'bundle_id="test-meanpool-0000"' in text


def test_buckets_resolve_milliseconds() -> None:
    assert LATENCY_BUCKETS[0] <= 0.0005 and LATENCY_BUCKETS[-1] >= 5.0


def test_registries_are_per_app() -> None:
    a, b = Metrics(), Metrics()
    a.llm_tokens.inc(5)
    assert b"seqrec_llm_generated_tokens_total 0.0" in b.exposition()
