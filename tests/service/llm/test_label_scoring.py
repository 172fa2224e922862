"""Label scoring on the transformers backend (tiny random Llama, real SmolLM2 tokenizer): the scores are the
brute-force label log-likelihoods of the plain model, concurrent calls share a padded forward pass without
changing them, adapters switch per call, and deadlines hold."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recbundle.rerank import RerankSpec, label_token_ids, rank_prompt
from service.llm import transformers_backend
from service.llm.base import DeadlineExceeded
from service.llm.transformers_backend import TransformersBackend
from tests.service.llm.fixtures import label_logprobs, make_lora_adapter, make_soft_prompt

SPEC = RerankSpec()
TITLES = [f"Film number {i} ({1950 + i})" for i in range(80)]


def prompt(tokenizer: Any, user: int, n_candidates: int = 20, n_history: int = 6) -> str:
    history = [(i, TITLES[i]) for i in range(user, user + n_history)]
    candidates = [(i, TITLES[i]) for i in range(user + 30, user + 30 + n_candidates)]
    return rank_prompt(tokenizer, history, candidates, SPEC)


@pytest.fixture(scope="module")
def material(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("scoring")
    return {
        "rerank": make_lora_adapter(tiny_llm_dir, tmp / "rerank", seed=1),
        "explain": make_lora_adapter(tiny_llm_dir, tmp / "explain", seed=2),
        "soft": make_soft_prompt(tmp / "soft.npy", n_tokens=4, hidden=64),
    }


@pytest.fixture(scope="module")
def backend(tiny_llm_dir: Path, material: dict[str, Path]) -> TransformersBackend:
    return TransformersBackend.load(
        str(tiny_llm_dir), dtype="float32", adapter_dir=material["explain"], soft_prompt=material["soft"],
        adapters={"rerank": material["rerank"]},
    )  # fmt: skip


def score(b: TransformersBackend, text: str, labels: list[int], soft: bool, adapter: str | None) -> list[float]:
    return asyncio.run(b.score_labels(text, labels, time.monotonic() + 60, soft_prompt=soft, adapter=adapter))


@pytest.mark.parametrize(("adapter", "soft"), [(None, False), ("rerank", True), ("rerank", False), (None, True)])
def test_scores_are_the_label_log_likelihoods(
    backend: TransformersBackend, tiny_llm_dir: Path, material: dict[str, Path], adapter: str | None, soft: bool
) -> None:
    text = prompt(backend.tokenizer, 3)
    labels = label_token_ids(backend.tokenizer, SPEC.labels)
    ours = score(backend, text, labels, soft, adapter)
    ref = label_logprobs(
        tiny_llm_dir, material[adapter] if adapter else None, material["soft"] if soft else None, text, labels
    )
    assert len(ours) == 20 and abs(float(np.logaddexp.reduce(ours))) < 1e-5  # normalised over the labels
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_concurrent_calls_share_a_padded_forward_with_the_same_scores(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = label_token_ids(backend.tokenizer, SPEC.labels)
    # different lengths (history sizes, candidate counts), so rows are padded differently
    cases = [(prompt(backend.tokenizer, u, 20 - u, 2 + 2 * u), labels[: 20 - u]) for u in range(6)]
    alone = [score(backend, text, lab, True, "rerank") for text, lab in cases]
    sizes: list[int] = []

    def recording(model: Any, rows: list[torch.Tensor], label_ids: list[list[int]]) -> list[list[float]]:
        sizes.append(len(rows))
        return real(model, rows, label_ids)

    real = transformers_backend.score_rows
    monkeypatch.setattr(transformers_backend, "score_rows", recording)

    async def together() -> list[list[float]]:
        blocker = backend.generate([backend.render("s", "u")], 8, time.monotonic() + 60)  # keeps the worker busy
        calls = [backend.score_labels(t, lab, time.monotonic() + 60, soft_prompt=True, adapter="rerank") for t, lab in cases]
        results = await asyncio.gather(blocker, *calls)
        return list(results[1:])  # type: ignore[arg-type]

    batched = asyncio.run(together())
    assert max(sizes) > 1, sizes  # queued behind the generation, they ran together
    for a, b in zip(alone, batched, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_adapters_switch_per_call(backend: TransformersBackend, tiny_llm_dir: Path, material: dict[str, Path]) -> None:
    """Generation keeps using the explain adapter after rerank calls; a bundle with only a rerank adapter
    generates with the base weights."""
    prompts = [backend.render("sys", "tell me about films")]
    only_explain = TransformersBackend.load(str(tiny_llm_dir), dtype="float32", adapter_dir=material["explain"])
    only_rerank = TransformersBackend.load(str(tiny_llm_dir), dtype="float32", adapters={"rerank": material["rerank"]})
    plain = TransformersBackend.load(str(tiny_llm_dir), dtype="float32")
    labels = label_token_ids(backend.tokenizer, SPEC.labels)
    score(backend, prompt(backend.tokenizer, 1), labels, False, "rerank")

    def text(b: TransformersBackend) -> str:
        return asyncio.run(b.generate(prompts, 12, time.monotonic() + 60)).texts[0]

    assert text(backend) == text(only_explain) != text(plain)
    score(only_rerank, prompt(backend.tokenizer, 1), labels, False, "rerank")
    assert text(only_rerank) == text(plain)
    assert only_rerank.adapter_names == {"rerank"} and backend.adapter_names == {"explain", "rerank"}


def test_deadline_and_bad_calls(backend: TransformersBackend) -> None:
    labels = label_token_ids(backend.tokenizer, SPEC.labels)
    text = prompt(backend.tokenizer, 0)

    async def queued_behind_generation() -> float:
        busy = asyncio.create_task(backend.generate([backend.render("s", "u")], 400, time.monotonic() + 1.0))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await backend.score_labels(text, labels, start + 0.2, soft_prompt=False, adapter=None)
        waited = time.monotonic() - start
        await busy
        return waited

    assert asyncio.run(queued_behind_generation()) < 0.5
    with pytest.raises(DeadlineExceeded):
        score_past = backend.score_labels(text, labels, time.monotonic() - 1, soft_prompt=False, adapter=None)
        asyncio.run(score_past)
    with pytest.raises(ValueError, match="not loaded"):
        score(backend, text, labels, False, "nope")


def test_batches_fit_the_earliest_deadline() -> None:
    """At 0.3 s per prompt and 1 s left, three calls per batch; calls with less than 0.3 s left and
    abandoned ones never run."""
    from service.llm.label_scoring import ScoreJob, ScoreQueue

    async def run() -> tuple[list[int], list[asyncio.Future[list[float]]]]:
        loop = asyncio.get_running_loop()
        queue = ScoreQueue(max_batch=16)
        now = time.monotonic()
        jobs = [ScoreJob([1], [2], True, "rerank", now + 1.0, loop.create_future()) for _ in range(7)]
        expired = ScoreJob([1], [2], True, "rerank", now + 0.2, loop.create_future())  # less than one prompt's time
        gone = ScoreJob([1], [2], True, "rerank", now + 1.0, loop.create_future())
        gone.cancelled.set()
        other = ScoreJob([1], [2], False, None, now + 1.0, loop.create_future())  # another adapter: its own batch
        for job in [*jobs, expired, gone, other]:
            queue.put(job)
        sizes = [len(batch) for batch in queue.take_groups(row_cost_s=0.3)]
        await asyncio.sleep(0)  # resolutions are scheduled on the loop
        return sizes, [expired.future, gone.future]

    sizes, (expired, gone) = asyncio.run(run())
    assert sizes == [3, 3, 1, 1]
    assert isinstance(expired.exception(), DeadlineExceeded) and not gone.done()
