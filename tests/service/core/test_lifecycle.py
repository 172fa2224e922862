"""Bundle generations: swap, requests that hold the old one, refused bundles, the grace cap, the watcher."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from service.api.protocol import RecommendRequest
from service.errors import BundleRefused, NotReady, SwapInProgress
from service.metrics.registry import Metrics
from service.resources import open_resources
from service.settings import Settings
from tests.service.conftest import tamper

A, B = "test-meanpool-0000", "test-meanpool-0001"


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def repoint(link: Path, target: Path) -> None:
    """Atomically repoint a symlink, as `training export` does with bundles/current."""
    tmp = link.with_name(link.name + ".tmp")
    tmp.symlink_to(target)
    os.replace(tmp, link)


def test_a_request_holding_the_old_generation_finishes_on_it_then_it_closes(
    make_settings: Callable[..., Settings], bundle_b_dir: Path
) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        async with open_resources(make_settings(), metrics) as res:
            old = res.lifecycle.acquire()  # a request in flight on bundle A
            assert old is not None and old.bundle_id == A
            result = await res.lifecycle.swap(bundle_b_dir)
            assert (result.bundle_id, result.previous_bundle_id) == (B, A)
            assert result.path == str(bundle_b_dir.resolve()) and result.load_ms > 0
            assert res.bundle.bundle_id == B and not old.closed  # new requests get B; A stays open
            assert sample(metrics, "seqrec_bundle_generation_inflight", generation="retired") == 1
            answer = await old.serving.recommend(RecommendRequest(history=["1001", "1002", "1003"], k=5))
            assert answer["bundle_id"] == A  # still served by A's index and encoder
            new = await res.serving.recommend(RecommendRequest(history=["1001", "1002", "1003"], k=5))
            assert new["bundle_id"] == B
            old.release()
            for _ in range(100):
                await asyncio.sleep(0.01)
                if old.closed:
                    break
            assert old.closed and res.lifecycle.current is not None and not res.lifecycle.current.closed
            assert sample(metrics, "seqrec_bundle_swaps_total", result="ok") == 1
            assert sample(metrics, "seqrec_bundle_info", bundle_id=B, dataset="test-movies", encoder="mean-pool",
                          index_type="IDMap2,Flat", n_items="50") == 1  # fmt: skip
            with pytest.raises(NotReady, match="was closed"):  # closed for real: its batcher is stopped
                await old.serving.recommend(RecommendRequest(history=["1001", "1002", "1003"], k=5))

    asyncio.run(scenario())


def test_a_refused_bundle_leaves_the_old_one_serving(
    make_settings: Callable[..., Settings], bundle_dir: Path, tmp_path: Path
) -> None:
    bad = tamper(bundle_dir, tmp_path / "tampered")

    async def scenario() -> None:
        metrics = Metrics()
        async with open_resources(make_settings(), metrics) as res:
            before = res.lifecycle.current
            with pytest.raises(BundleRefused, match="items.jsonl fails its sha256 check") as e:
                await res.lifecycle.swap(bad)
            assert e.value.status_code == 409 and e.value.details == {"path": str(bad.resolve())}
            with pytest.raises(BundleRefused, match="manifest.json is missing"):
                await res.lifecycle.swap(tmp_path / "nowhere")
            assert res.lifecycle.current is before and not before.closed
            answer = await res.serving.recommend(RecommendRequest(history=["1001", "1002"], k=3))
            assert answer["bundle_id"] == A
            assert sample(metrics, "seqrec_bundle_swaps_total", result="refused") == 2
            assert sample(metrics, "seqrec_bundle_swaps_total", result="ok") == 0

    asyncio.run(scenario())


def test_a_second_swap_while_one_runs_is_refused(
    make_settings: Callable[..., Settings], bundle_b_dir: Path
) -> None:
    async def scenario() -> None:
        async with open_resources(make_settings(), Metrics()) as res:
            first = asyncio.create_task(res.lifecycle.swap(bundle_b_dir))
            await asyncio.sleep(0)  # it starts loading
            with pytest.raises(SwapInProgress):
                await res.lifecycle.swap(bundle_b_dir)
            assert (await first).bundle_id == B

    asyncio.run(scenario())


def test_past_the_grace_the_old_generation_is_closed_anyway(
    make_settings: Callable[..., Settings], bundle_b_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with open_resources(make_settings(bundle_retire_grace_s=0.2), Metrics()) as res:
            stuck = res.lifecycle.acquire()  # never released in time
            assert stuck is not None
            await res.lifecycle.swap(bundle_b_dir)
            await asyncio.sleep(0.1)
            assert not stuck.closed
            await asyncio.sleep(0.4)
            assert stuck.closed and stuck.inflight == 1
            stuck.release()

    with caplog.at_level(logging.WARNING, logger="service.core.lifecycle"):
        asyncio.run(scenario())
    assert "with 1 requests still in flight" in caplog.text


def test_the_watcher_follows_a_repointed_link_and_skips_a_bad_target(
    make_settings: Callable[..., Settings], bundle_dir: Path, bundle_b_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "current"
    link.symlink_to(bundle_dir)
    bad = tamper(bundle_dir, tmp_path / "tampered")

    async def wait_for(check: Callable[[], bool]) -> None:
        for _ in range(200):
            if check():
                return
            await asyncio.sleep(0.025)
        raise AssertionError("the watcher did not act within 5 s")

    async def scenario() -> None:
        async with open_resources(make_settings(bundle_dir=link, bundle_watch_s=0.05), Metrics()) as res:
            life = res.lifecycle
            assert life.current is not None and life.current.path == bundle_dir.resolve()
            assert res.bundle.root == bundle_dir.resolve()  # read through the resolved directory, not the link
            repoint(link, bundle_b_dir)
            await wait_for(lambda: res.bundle.bundle_id == B)
            assert life.current.path == bundle_b_dir.resolve()
            repoint(link, bad)
            await wait_for(lambda: life.watch_failures == 1)
            await asyncio.sleep(0.2)  # a refused target is not retried every poll
            assert life.watch_failures == 1 and res.bundle.bundle_id == B
            repoint(link, bundle_dir)
            await wait_for(lambda: res.bundle.bundle_id == A)

    asyncio.run(scenario())
