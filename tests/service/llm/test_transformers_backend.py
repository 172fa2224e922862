"""TransformersBackend on a tiny random Llama; one slow test on the real converted SmolLM2."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
from service.llm.transformers_backend import TransformersBackend
from tests.service.conftest import ClientFactory
from tests.service.ids import exts


@pytest.fixture(scope="module")
def tiny(tiny_llm_dir: Path) -> TransformersBackend:
    return TransformersBackend.load(str(tiny_llm_dir), dtype="float32")


def test_batched_generation(tiny: TransformersBackend) -> None:
    prompts = [tiny.render("sys", "short"), tiny.render("sys", "a much longer user message " * 5)]
    assert prompts[0].startswith("<|im_start|>system")  # SmolLM2's chat template
    gen = asyncio.run(tiny.generate(prompts, max_new_tokens=6, deadline=time.monotonic() + 30))
    assert len(gen.texts) == 2 and 0 < gen.new_tokens <= 12 and not gen.stopped_early


def test_deadline_stops_generation(tiny: TransformersBackend) -> None:
    start = time.monotonic()
    gen = asyncio.run(tiny.generate([tiny.render("s", "u")], max_new_tokens=500, deadline=start + 0.05))
    assert gen.stopped_early and time.monotonic() - start < 2.0


def test_stream_pieces_add_up_to_the_batch_answer(tiny: TransformersBackend) -> None:
    prompt = tiny.render("sys", "tell me something")

    async def run() -> tuple[list[str], str]:
        pieces = [p async for p in tiny.stream(prompt, 12, time.monotonic() + 30)]
        whole = await tiny.generate([prompt], 12, time.monotonic() + 30)
        return pieces, whole.texts[0]

    pieces, whole = asyncio.run(run())
    assert len(pieces) >= 1 and "".join(pieces).strip() == whole


def test_cancelled_caller_stops_the_worker(tiny: TransformersBackend) -> None:
    async def run() -> float:
        task = asyncio.create_task(tiny.generate([tiny.render("s", "u")], 2000, time.monotonic() + 60))
        await asyncio.sleep(0.3)
        task.cancel()
        start = time.monotonic()  # the single worker is free again once the cancelled call has stopped
        await tiny.generate([tiny.render("s", "v")], 2, time.monotonic() + 60)
        return time.monotonic() - start

    assert asyncio.run(run()) < 5.0


def test_choose_returns_the_most_likely_choice(tiny: TransformersBackend) -> None:
    prompt = tiny.render("sys", "pick one")
    choices = ["12", "345", "6789"]
    picked = asyncio.run(tiny.choose(prompt, choices, time.monotonic() + 30))
    assert picked in choices
    # the same scores by hand: the summed log-probability of each choice's tokens after the prompt
    import torch

    def score(choice: str) -> float:
        p = tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tiny.tokenizer(choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = tiny.model(torch.tensor([p + c])).logits.float().log_softmax(-1)[0]
        return sum(float(logp[len(p) + j - 1, t]) for j, t in enumerate(c))

    assert picked == max(choices, key=score)


def test_choose_with_a_soft_prompt(tiny_llm_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    hidden = 64
    rng = np.random.default_rng(0)
    np.save(tmp_path / "soft.npy", (rng.standard_normal((4, hidden)) * 5).astype(np.float32))
    backend = TransformersBackend.load(str(tiny_llm_dir), dtype="float32", soft_prompt=tmp_path / "soft.npy")
    assert backend.has_soft_prompt
    prompt, choices = backend.render("sys", "pick one"), [str(i) for i in range(100, 140)]
    plain = asyncio.run(backend.choose(prompt, choices, time.monotonic() + 30))
    soft = asyncio.run(backend.choose(prompt, choices, time.monotonic() + 30, soft_prompt=True))
    assert plain in choices and soft in choices
    np.save(tmp_path / "bad.npy", np.zeros((4, hidden + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        TransformersBackend.load(str(tiny_llm_dir), dtype="float32", soft_prompt=tmp_path / "bad.npy")


@pytest.mark.slow
def test_real_smollm2_names_a_history_title(make_client: ClientFactory) -> None:
    """The converted SmolLM2-135M-Instruct (bf16, from PyPI's GGUF) cites the user's history by title."""
    convert_smollm2(DEFAULT_MODEL_DIR)
    settings = {"llm_backend": "transformers", "explain_deadline_ms": 120000, "explain_max_new_tokens": 48}
    with make_client(**settings) as client:
        history = [41, 43, 47]  # Toy Story, The Lion King, Dumbo
        body = client.post("/v1/recommend", json={"history": exts(history), "k": 3, "explain": True}).json()
    assert body["explanation_status"] == "ok", body
    texts = [it["explanation"] for it in body["items"] if it["explanation"]]
    assert texts, body
    cited = [t for t in texts if any(name in t for name in ("Toy Story", "Lion King", "Dumbo"))]
    assert cited, texts
