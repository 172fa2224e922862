"""/v1/admin/bundle: swap over HTTP, refusals in the one error shape, requests in flight keep their bundle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from service.main import create_app, lifespan
from service.settings import Settings
from tests.service.asgi import Exchange
from tests.service.conftest import ClientFactory, tamper
from tests.service.sse import parse_sse

A, B = "test-meanpool-0000", "test-meanpool-0001"
BODY = {"history": ["1001", "1002", "1003"], "k": 5}


def test_swap_then_status_then_back_to_the_configured_bundle(
    make_client: ClientFactory, bundle_dir: Path, bundle_b_dir: Path
) -> None:
    with make_client() as client:
        r = client.post("/v1/admin/bundle", json={"path": str(bundle_b_dir)})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["bundle_id"], body["previous_bundle_id"]) == (B, A)
        assert body["path"] == str(bundle_b_dir.resolve()) and body["load_ms"] > 0
        status = client.get("/v1/admin/bundle").json()
        assert status["bundle_id"] == B and status["generation"] == 2 and status["path"] == str(bundle_b_dir.resolve())
        assert status["configured_path"] == str(bundle_dir) and status["loaded_at"].endswith("+00:00")
        assert client.post("/v1/recommend", json=BODY).json()["bundle_id"] == B
        assert client.get("/readyz").json()["bundle_id"] == B
        r = client.post("/v1/admin/bundle")  # no body: the configured bundle_dir, resolved again
        assert r.status_code == 200 and r.json()["bundle_id"] == A
        metrics = client.get("/metrics").text
        assert 'seqrec_bundle_swaps_total{result="ok"} 2.0' in metrics
        assert f'bundle_id="{A}"' in metrics


def test_a_refused_bundle_is_a_409_naming_the_file_and_the_old_one_serves(
    make_client: ClientFactory, bundle_dir: Path, tmp_path: Path
) -> None:
    bad = tamper(bundle_dir, tmp_path / "tampered")
    with make_client() as client:
        r = client.post("/v1/admin/bundle", json={"path": str(bad)})
        assert r.status_code == 409
        error = r.json()["error"]
        assert error["code"] == "bundle_refused" and "items.jsonl fails its sha256 check" in error["message"]
        r = client.post("/v1/admin/bundle", json={"path": "bad\x00path"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "bundle_refused"
        assert client.post("/v1/recommend", json=BODY).json()["bundle_id"] == A
        assert client.get("/readyz").status_code == 200
        assert 'seqrec_bundle_swaps_total{result="refused"} 2.0' in client.get("/metrics").text


def test_requests_in_flight_finish_on_the_bundle_they_started_on(
    make_settings: Callable[..., Settings], bundle_b_dir: Path
) -> None:
    """A JSON request (fast path) and an SSE stream (framework route) are held open across a swap: both
    answer from bundle A, the next request from B, and A is closed once both are done."""
    app = create_app(make_settings())

    async def scenario() -> None:
        async with lifespan(app):
            gate = asyncio.Event()
            json_req = Exchange.post("/v1/recommend", BODY, body_gate=gate)
            sse_req = Exchange.post("/v1/recommend/stream", BODY, body_gate=gate)
            running = [asyncio.create_task(x.run(app)) for x in (json_req, sse_req)]
            await asyncio.sleep(0.05)  # both started: they hold generation 1 while their bodies wait
            old = app.state.resources.lifecycle.current
            assert old.inflight == 2
            swap = await Exchange.post("/v1/admin/bundle", {"path": str(bundle_b_dir)}).run(app)
            assert swap.status == 200 and swap.json()["previous_bundle_id"] == A
            after = await Exchange.post("/v1/recommend", BODY).run(app)
            assert after.json()["bundle_id"] == B
            assert not old.closed and old.inflight == 2
            gate.set()
            await asyncio.gather(*running)
            assert json_req.status == 200 and json_req.json()["bundle_id"] == A
            events = parse_sse(b"".join(sse_req.chunks).decode().splitlines())
            assert sse_req.status == 200 and events[0][0] == "ranking" and events[0][1]["bundle_id"] == A
            for _ in range(100):
                if old.closed:
                    break
                await asyncio.sleep(0.01)
            assert old.closed and old.inflight == 0

    asyncio.run(scenario())


def test_a_second_swap_while_one_runs_is_a_409(make_settings: Callable[..., Settings], bundle_b_dir: Path) -> None:
    app = create_app(make_settings())

    async def scenario() -> None:
        async with lifespan(app):
            first = asyncio.create_task(Exchange.post("/v1/admin/bundle", {"path": str(bundle_b_dir)}).run(app))
            life = app.state.resources.lifecycle
            while not life._swapping:
                await asyncio.sleep(0.001)
            second = await Exchange.post("/v1/admin/bundle", {}).run(app)
            assert second.status == 409 and second.json()["error"]["code"] == "swap_in_progress"
            assert (await first).status == 200

    asyncio.run(scenario())
