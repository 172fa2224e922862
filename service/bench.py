"""Throughput of encode+search with and without the micro-batcher, in process (no HTTP):

    python -m service.bench --bundle bundles/current --concurrency 32 --requests 2000 --windows off,0,0.5,1

Each window is one run of `--requests` random histories issued `--concurrency` at a time. `off` = no batcher
(batch_max_size=1); `0` = batch whatever is queued when the worker frees up; > 0 also waits that long.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path

import numpy as np

from service.core.recommender import Recommender
from service.index.bundle import Bundle, load_bundle
from service.metrics.registry import Metrics

logger = logging.getLogger(__name__)


async def run(
    bundle: Bundle, window_ms: float | None, concurrency: int, n_requests: int, seed: int
) -> tuple[float, float]:
    """(requests per second, p99 latency in ms)."""
    rng = np.random.default_rng(seed)
    histories = [
        rng.integers(1, bundle.n_items + 1, size=int(rng.integers(5, 50))).tolist() for _ in range(n_requests)
    ]
    max_size = 1 if window_ms is None else 64  # None: no batcher at all
    rec = Recommender(bundle, Metrics(), fanout=2, batch_window_ms=window_ms or 0.0, batch_max_size=max_size)
    await rec.start()
    latencies: list[float] = []
    queue = iter(histories)

    async def worker() -> None:
        for history in queue:
            t = time.perf_counter()
            await rec.rank(history, k=10, exclude_seen=True)
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await rec.close()
    elapsed = time.perf_counter() - start
    return n_requests / elapsed, float(np.percentile(latencies, 99) * 1000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--windows", default="off,0,0.5,1", help="batch windows in ms; off = no batcher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bundle = load_bundle(args.bundle)
    asyncio.run(run(bundle, None, 4, 200, seed=1))  # warm-up
    for name in args.windows.split(","):
        window = None if name == "off" else float(name)
        rps, p99 = asyncio.run(run(bundle, window, args.concurrency, args.requests, seed=0))
        logger.info("batching %-4s (c=%d): %.0f req/s, p99 %.1f ms", name, args.concurrency, rps, p99)


if __name__ == "__main__":
    main()
