"""encode -> FAISS top-N for a batch of padded histories, plus an optional micro-batcher that merges
concurrent requests into one encoder call and one FAISS search (see `python -m service.bench`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np
import torch

from service.errors import NotReady
from service.index.bundle import Bundle
from service.metrics.registry import Metrics


@dataclass(frozen=True)
class Hits:
    scores: np.ndarray  # (B, N) float32, best first
    ids: np.ndarray  # (B, N) int64 dense item ids, -1 where the index had fewer than N
    encode_s: float
    search_s: float


class Retriever:
    """Runs encode+search on its own threads. Each thread gives FAISS `search_threads` OpenMP threads:
    with 2 on a busy 2-core machine one single-query search of 50 vectors took 12 ms, with 1 it took
    0.08 ms (docs/service.md); parallelism comes from concurrent requests instead.

    On a GPU index the searches are serialised (encoding still overlaps): FAISS GPU indexes are not
    thread-safe, not even for search, since they share one StandardGpuResources and its stream (FAISS wiki,
    "Threads and asynchronous calls"). Concurrency there comes from the micro-batcher merging requests
    into one search, which a GPU answers for 64 queries in about the time of one (docs/service.md)."""

    def __init__(self, bundle: Bundle, metrics: Metrics, workers: int = 4, search_threads: int = 1) -> None:
        self.encoder = bundle.encoder
        self.index = bundle.index
        self.metrics = metrics
        self.search_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if bundle.on_gpu else contextlib.nullcontext()
        )
        self._executor = ThreadPoolExecutor(
            workers,
            thread_name_prefix="search",
            initializer=faiss.omp_set_num_threads,
            initargs=(search_threads,),
        )

    async def run(self, seqs: np.ndarray, n: int) -> Hits:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self, seqs, n)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __call__(self, seqs: np.ndarray, n: int) -> Hits:
        """seqs (B, max_len) int64 left-padded -> top-n hits per row. Synchronous; run it off the loop."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            users = self.encoder(torch.from_numpy(seqs)).float().contiguous().numpy()  # (B, dim)
        t1 = time.perf_counter()
        with self.search_lock:  # the wait for a GPU search in progress counts as search time
            scores, ids = self.index.search(users, n)  # (B, n), (B, n)
        t2 = time.perf_counter()
        self.metrics.batch_size.observe(len(seqs))
        return Hits(scores, ids.astype(np.int64, copy=False), t1 - t0, t2 - t1)


@dataclass
class _Pending:
    seq: np.ndarray
    n: int
    future: asyncio.Future[Hits]


def _closed() -> NotReady:
    return NotReady("the bundle this request started on was closed (a swap's grace ran out): retry")


class MicroBatcher:
    """Runs queued requests as one batch (at most `max_size`) on a worker thread, optionally waiting up
    to `window_s` for more. Each caller gets its own row; the timings are the batch's."""

    def __init__(self, retriever: Retriever, window_s: float, max_size: int, inflight: int = 2) -> None:
        self.retriever = retriever
        self.window_s = window_s
        self.max_size = max_size
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # More than one batch in flight lets the worker threads encode one batch while the event loop
        # answers the previous one; with a single slot the two took turns and each sat idle half the time.
        self._slots = asyncio.Semaphore(inflight)
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="micro-batcher")

    async def close(self) -> None:
        """Stop; callers still waiting (a bundle generation closed past its swap grace) get NotReady."""
        self._closed = True
        for task in [self._task, *self._running]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        while not self._queue.empty():
            future = self._queue.get_nowait().future
            if not future.done():
                future.set_exception(_closed())

    async def submit(self, seq: np.ndarray, n: int) -> Hits:
        if self._closed:
            raise _closed()
        future: asyncio.Future[Hits] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(seq, n, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        """Whatever is queued once a batch slot is free (no added latency when idle: while the running
        batches encode, the next one accumulates), plus, with a window, what arrives within it."""
        batch = [await self._queue.get()]
        await asyncio.sleep(0)  # let callers scheduled in the same loop turn enqueue
        while len(batch) < self.max_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        deadline = time.perf_counter() + self.window_s
        while len(batch) < self.max_size and self.window_s > 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            n = max(p.n for p in batch)
            try:
                hits = await self.retriever.run(np.stack([p.seq for p in batch]), n)
            except Exception as e:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                return
            for row, p in enumerate(batch):
                if not p.future.done():
                    p.future.set_result(
                        Hits(
                            hits.scores[row : row + 1, : p.n],
                            hits.ids[row : row + 1, : p.n],
                            hits.encode_s,
                            hits.search_s,
                        )
                    )
        finally:
            self._slots.release()
            for p in batch:  # cancelled while running (closed): callers must not wait forever
                if not p.future.done():
                    p.future.set_exception(_closed())
