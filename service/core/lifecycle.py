"""Bundle generations and swapping between them without a restart.

A *generation* is one bundle and everything built on it (recommender with its FAISS index and worker
threads, reranker, explainer, RecommendService, the LLM binding). The app serves one current generation;
every request holds the generation it started on (`acquire` ... `release`, at the end of the response or
of the SSE stream), so a swap never changes a bundle under a running request. A swap builds and verifies
the new generation completely (checksums, encoder probe, index, LLM) before it becomes current; the old one
is closed when its last request ends, or after `retire_grace_s` anyway (logged with the requests it cut).

Swaps are serialised: a second one while one runs is refused (`SwapInProgress`), never queued, so an
operator and the watcher cannot stack loads. A refused bundle (`BundleError`) leaves the current one
serving and is raised as `BundleRefused` (HTTP 409 naming the file and the problem).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from recbundle import BundleError
from service.core.serving import RecommendService
from service.errors import BundleRefused, SwapInProgress
from service.index.bundle import Bundle
from service.llm.loader import LLMStartupError, LoadedLLM
from service.metrics.registry import Metrics

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Generation:
    number: int  # 1, 2, ... in the order they were loaded
    path: Path  # the bundle directory, resolved once (symlinks followed): every file was read through it
    bundle: Bundle
    llm: LoadedLLM
    serving: RecommendService
    close_all: Callable[[], Awaitable[None]]  # closes what this generation opened, in reverse order
    load_ms: float
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    inflight: int = 0  # requests holding this generation
    retired: bool = False
    closed: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def bundle_id(self) -> str:
        return self.bundle.bundle_id

    def acquire(self) -> Generation:
        self.inflight += 1  # one event loop: a plain counter is enough
        return self

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self.retired:
            self._idle.set()

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.close_all()


@dataclass(frozen=True)
class SwapResult:
    bundle_id: str
    previous_bundle_id: str | None
    path: str
    load_ms: float


Opener = Callable[[Path, int], Awaitable[Generation]]  # (resolved bundle dir, generation number) -> built


class BundleLifecycle:
    """Holds the current generation, swaps it, retires old ones, and optionally watches `bundle_dir`."""

    def __init__(
        self, bundle_dir: Path, opener: Opener, metrics: Metrics, *, retire_grace_s: float, watch_s: float = 0.0
    ) -> None:
        self.bundle_dir = Path(bundle_dir)  # as configured: typically the bundles/current symlink
        self.opener = opener
        self.metrics = metrics
        self.retire_grace_s = retire_grace_s
        self.watch_s = watch_s
        self.current: Generation | None = None
        self.watch_failures = 0
        self._numbers = 0
        self._swapping = False
        self._retiring: set[asyncio.Task[None]] = set()
        self.retired: set[Generation] = set()  # swapped out, not yet closed
        self._watcher: asyncio.Task[None] | None = None
        self._last_refused: Path | None = None  # the watcher logs a refused target once, not every poll
        gauge = metrics.generation_inflight
        gauge.labels("current").set_function(lambda: self.current.inflight if self.current else 0)
        gauge.labels("retired").set_function(lambda: sum(g.inflight for g in self.retired))

    async def start(self) -> Generation:
        """Open the first generation (a BundleError stops startup) and start the watcher if configured."""
        gen = await self._open(self.bundle_dir.resolve())
        self._make_current(gen)
        if self.watch_s > 0:
            self._watcher = asyncio.create_task(self._watch(), name="bundle-watch")
        return gen

    def acquire(self) -> Generation | None:
        """The current generation, held until `release()`; None before start and after close."""
        gen = self.current
        return gen.acquire() if gen is not None else None

    async def swap(self, path: Path | None = None) -> SwapResult:
        """Load `path` (default: the configured bundle_dir, re-resolved), then make it current."""
        if self._swapping:
            raise SwapInProgress("a bundle swap is already running: retry when it has finished")
        self._swapping = True
        try:
            try:
                resolved = Path(path if path is not None else self.bundle_dir).resolve()
            except (OSError, ValueError) as e:  # a symlink loop, a NUL byte
                self.metrics.bundle_swaps.labels("refused").inc()
                raise BundleRefused(f"bundle path {str(path)!r} cannot be resolved: {e}", {"path": str(path)}) from e
            try:
                gen = await self._open(resolved)
            except (BundleError, LLMStartupError) as e:
                self.metrics.bundle_swaps.labels("refused").inc()
                logger.error("bundle %s refused, %s keeps serving: %s", resolved, self._current_id(), e)
                raise BundleRefused(f"bundle {resolved} refused: {e}", {"path": str(resolved)}) from e
            previous = self._current_id()
            self._make_current(gen)
            self.metrics.bundle_swaps.labels("ok").inc()
            logger.info("swapped bundle %s -> %s (%s, %.0f ms)", previous, gen.bundle_id, resolved, gen.load_ms)
            return SwapResult(gen.bundle_id, previous, str(resolved), gen.load_ms)
        finally:
            self._swapping = False

    async def _open(self, resolved: Path) -> Generation:
        self._numbers += 1
        start = time.perf_counter()
        gen = await self.opener(resolved, self._numbers)
        gen.load_ms = (time.perf_counter() - start) * 1000
        return gen

    def _current_id(self) -> str | None:
        return self.current.bundle_id if self.current is not None else None

    def _make_current(self, gen: Generation) -> None:
        old, self.current = self.current, gen
        m = gen.bundle.manifest
        self.metrics.set_bundle(m.bundle_id, m.dataset, m.encoder.kind, m.index.type, m.n_items)
        if old is not None:
            self._retire(old)

    def _retire(self, gen: Generation) -> None:
        gen.retired = True
        self.retired.add(gen)
        if gen.inflight == 0:
            gen._idle.set()
        task = asyncio.create_task(self._close_when_idle(gen), name=f"retire-generation-{gen.number}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_when_idle(self, gen: Generation) -> None:
        try:
            await asyncio.wait_for(gen._idle.wait(), self.retire_grace_s)
        except TimeoutError:
            logger.warning(
                "closing bundle %s (generation %d) with %d requests still in flight: %.0f s grace is over",
                gen.bundle_id, gen.number, gen.inflight, self.retire_grace_s,
            )  # fmt: skip
        try:
            await gen.close()
        except Exception:
            logger.exception("closing bundle %s (generation %d) failed", gen.bundle_id, gen.number)
        else:
            logger.info("closed bundle %s (generation %d)", gen.bundle_id, gen.number)
        finally:
            self.retired.discard(gen)

    async def _watch(self) -> None:
        """Swap when the configured bundle_dir resolves somewhere new (training export repointed the link)."""
        while True:
            await asyncio.sleep(self.watch_s)
            target = self.bundle_dir.resolve()
            current = self.current
            if current is None or target == current.path or target == self._last_refused or self._swapping:
                continue
            try:
                await self.swap(target)
                self._last_refused = None
            except BundleRefused as e:
                self.watch_failures += 1
                self._last_refused = target
                logger.error("bundle watch: %s", e.message)
            except Exception:  # the watcher must outlive any one failure
                self.watch_failures += 1
                self._last_refused = target
                logger.exception("bundle watch: swapping to %s failed", target)

    async def aclose(self, wait_s: float = 5.0) -> None:
        """Stop the watcher, retire the current generation and close every generation: when their requests
        end, or after `wait_s` (at shutdown the server has already waited for its requests)."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self.current is not None:
            gen, self.current = self.current, None
            self._retire(gen)
        _, late = await asyncio.wait(list(self._retiring), timeout=wait_s) if self._retiring else (set(), set())
        for gen in list(self.retired):
            if gen.inflight:
                logger.warning("closing bundle %s with %d requests still in flight", gen.bundle_id, gen.inflight)
            gen._idle.set()
        await asyncio.gather(*late, return_exceptions=True)
