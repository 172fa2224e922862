"""LLM engines across bundle swaps, and the explanation cache keys that name what wrote a text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recbundle import load_manifest
from service.index.bundle import load_bundle
from service.llm.loader import LoadedLLM
from service.llm.pool import LLMPool, explain_llm_id
from service.llm.transformers_backend import TransformersBackend
from service.metrics.registry import Metrics
from service.resources import make_explainer
from service.sessions.memory import InMemoryStore
from service.settings import Settings
from tests.service.bundle_factory import build_bundle
from tests.service.llm.fixtures import make_lora_adapter


@pytest.fixture(scope="module")
def adapter_bundles(tmp_path_factory: pytest.TempPathFactory, tiny_llm_dir: Path) -> dict[str, Path]:
    """Same retrieval model (same bundle id), explain adapters that differ only in their weights (same path
    in the bundle, lora/explain), and one more bundle with new embeddings and the first adapter."""
    tmp = tmp_path_factory.mktemp("adapter-bundles")
    one = make_lora_adapter(tiny_llm_dir, tmp / "lora-1", seed=1)
    two = make_lora_adapter(tiny_llm_dir, tmp / "lora-2", seed=2)
    out = {"one": tmp / "b1", "two": tmp / "b2", "one_again": tmp / "b3"}
    build_bundle(out["one"], lora_adapter=one)
    build_bundle(out["two"], lora_adapter=two)
    build_bundle(out["one_again"], lora_adapter=one, seed=5)
    return out


def test_another_adapter_is_another_cache_key(
    adapter_bundles: dict[str, Path], make_settings: Callable[..., Settings], tiny_llm_dir: Path
) -> None:
    settings = make_settings(llm_model=str(tiny_llm_dir))
    one, two = (load_bundle(adapter_bundles[k]) for k in ("one", "two"))
    assert one.bundle_id == two.bundle_id  # the retrieval model alone cannot tell them apart
    assert explain_llm_id(settings, one.manifest) != explain_llm_id(settings, two.manifest)
    other_base = make_settings(llm_model="another/model")
    assert explain_llm_id(settings, one.manifest) != explain_llm_id(other_base, one.manifest)
    base_weights = make_settings(llm_model=str(tiny_llm_dir), explain_adapter="base")
    assert explain_llm_id(settings, one.manifest) != explain_llm_id(base_weights, one.manifest)

    async def scenario() -> None:
        store, metrics = InMemoryStore(10, 60), Metrics()
        llm = LoadedLLM(None, "disabled")
        before, after = (make_explainer(settings, llm, store, b, metrics) for b in (one, two))
        history = [1, 2, 3]
        await before._remember(history, {7: "Because you liked Groundhog Day."})
        assert await before._cached(history, [7]) == {7: "Because you liked Groundhog Day."}
        assert await after._cached(history, [7]) == {}  # the swapped-in adapter never reads the old text

    asyncio.run(scenario())


def test_one_model_serves_every_bundle_of_the_same_base(
    adapter_bundles: dict[str, Path], make_settings: Callable[..., Settings], tiny_llm_dir: Path
) -> None:
    """Same LLM files: the same backend. Other adapter weights: the running model gets the new adapters
    bound beside the old ones, and each bundle's backend writes what a fresh load of its adapter writes,
    also after the other one was closed (its adapters unloaded)."""
    settings = make_settings(llm_backend="transformers", llm_model=str(tiny_llm_dir), llm_dtype="float32")
    prompt = ["<|im_start|>user\nRecommend a film.<|im_end|>\n<|im_start|>assistant\n"]

    async def text(backend: Any) -> str:
        return (await backend.generate(prompt, 12, time.monotonic() + 60)).texts[0]

    async def fresh(bundle: Path) -> str:
        backend = TransformersBackend.load(str(tiny_llm_dir), "cpu", "float32", adapters={"explain": bundle / "lora/explain"})
        try:
            return await text(backend)
        finally:
            await backend.aclose()

    async def scenario() -> None:
        pool = LLMPool(settings, Metrics())
        m = {k: load_manifest(p) for k, p in adapter_bundles.items()}
        first, key1 = await pool.acquire(m["one"], adapter_bundles["one"])
        again, key3 = await pool.acquire(m["one_again"], adapter_bundles["one_again"])
        assert again.backend is first.backend and key1 == key3  # new retrieval model, same LLM: reused
        other, key2 = await pool.acquire(m["two"], adapter_bundles["two"])
        one_b, two_b = first.backend, other.backend
        assert two_b is not one_b and two_b.model is one_b.model and pool.opened == 1  # type: ignore[union-attr]
        want_one, want_two = await fresh(adapter_bundles["one"]), await fresh(adapter_bundles["two"])
        assert want_one != want_two  # the adapters matter
        assert await text(one_b) == want_one and await text(two_b) == want_two
        await pool.release(key1)
        assert one_b.model is not None  # type: ignore[union-attr]  # still used by "one_again"
        await pool.release(key3)
        assert one_b.model is None  # type: ignore[union-attr]  # closed with its last user
        assert await text(two_b) == want_two  # unaffected by the other bundle's adapters going
        await pool.release(key2)
        assert two_b.model is None  # type: ignore[union-attr]

    asyncio.run(scenario())
