"""Explanation throughput of the LLM backends, in process, on the same model and the same prompts:

    python scripts/bench_llm.py --bundle bundles/current --preset ml-100k --out runs/bench/llm.json

Prompts are the service's own explanation prompts (service.core.explain) for real test users of the
preset: each user's history and the top items the bundle retrieves for it, one prompt per (user, item),
so no two requests are the same. One request = one explanation (greedy, up to --max-new-tokens). For each
backend and each concurrency C, C clients send requests back to back until --requests-per-client each
are done; the figures are requests/s and generated tokens/s over that run (after one warm-up request).
The transformers backend serves one request at a time on its worker thread (as in the service); vLLM
batches whatever is in flight (continuous batching).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.core.explain import Explainer  # noqa: E402
from service.core.recommender import Recommender  # noqa: E402
from service.index.bundle import load_bundle  # noqa: E402
from service.llm.base import LLMBackend  # noqa: E402
from service.llm.loader import resolve_dtype  # noqa: E402
from service.metrics.registry import Metrics  # noqa: E402
from service.sessions.memory import InMemoryStore  # noqa: E402

log = logging.getLogger("bench_llm")


async def prompts_for(bundle_dir: Path, preset: str, n_users: int, k: int, render: LLMBackend) -> list[str]:
    from training import pipeline
    from training.config import load_config

    _, split = pipeline.prepare_stage(load_config(preset))
    bundle = load_bundle(bundle_dir)
    rec = Recommender(bundle, Metrics(), fanout=2)
    explainer = Explainer(
        render, "ok", InMemoryStore(10, 60), bundle.catalogue, bundle.bundle_id, Metrics(),
        deadline_ms=1, max_new_tokens=1, history_items=5, cache_ttl_s=1, item_embeddings=bundle.item_embeddings,
    )  # fmt: skip
    out = []
    for history in split.test_history[:n_users]:
        h = [int(i) for i in history[-50:]]
        ranking = await rec.rank(h, k, exclude_seen=True)
        out += [explainer.prompt(render, h, item)[0] for item, _ in ranking.items]
    await rec.close()
    return out


async def run_level(backend: LLMBackend, prompts: list[str], concurrency: int, per_client: int, max_new: int) -> dict[str, Any]:
    queue = iter(prompts)
    tokens = 0
    latencies: list[float] = []

    async def client() -> None:
        nonlocal tokens
        for _ in range(per_client):
            t = time.perf_counter()
            gen = await backend.generate([next(queue)], max_new, time.monotonic() + 3600)
            latencies.append(time.perf_counter() - t)
            tokens += gen.new_tokens

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "tokens": tokens,
        "p50_latency_s": round(latencies[len(latencies) // 2], 2),
    }


async def bench_backend(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    dtype = resolve_dtype(args.dtype, kind, "cpu")
    t = time.perf_counter()
    backend: LLMBackend
    if kind == "vllm":
        from service.llm.vllm_backend import VLLMBackend

        backend = VLLMBackend.start(args.model, dtype=dtype)
    else:
        from service.llm.transformers_backend import TransformersBackend

        backend = TransformersBackend.load(args.model, dtype=dtype)
    started = time.perf_counter() - t
    prompts = await prompts_for(Path(args.bundle), args.preset, args.users, args.k, backend)
    log.info("%s (%s) up in %.1f s; %d distinct prompts", kind, dtype, started, len(prompts))
    pool = iter(prompts)
    await backend.generate([next(pool)], args.max_new_tokens, time.monotonic() + 3600)  # warm-up
    levels = []
    rest = list(pool)
    for c in args.concurrency:
        needed = c * args.requests_per_client
        if needed > len(rest):
            raise SystemExit(f"{needed} prompts needed at concurrency {c}, {len(rest)} left: raise --users")
        level = await run_level(backend, rest[:needed], c, args.requests_per_client, args.max_new_tokens)
        rest = rest[needed:]
        log.info("%s c=%d: %s", kind, c, level)
        levels.append(level)
    await backend.aclose()
    return {"backend": kind, "dtype": dtype, "startup_s": round(started, 1), "levels": levels}


def main() -> None:
    from recbundle.base_model import DEFAULT_MODEL_DIR

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="bundles/current")
    p.add_argument("--preset", default="ml-100k")
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--backends", nargs="+", default=["vllm", "transformers"])
    p.add_argument("--dtype", default="auto", help="auto: each backend's own default (service.llm.loader)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--users", type=int, default=12, help="test users whose prompts are used (k prompts each)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--out", default="runs/bench/llm.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = [asyncio.run(bench_backend(kind, args)) for kind in args.backends]
    by = {r["backend"]: {lv["concurrency"]: lv for lv in r["levels"]} for r in results}
    report: dict[str, Any] = {"command": "python scripts/bench_llm.py " + " ".join(sys.argv[1:]), "results": results}
    if {"vllm", "transformers"} <= by.keys():
        report["speedup_tokens_per_s"] = {
            c: round(by["vllm"][c]["tokens_per_s"] / max(by["transformers"][c]["tokens_per_s"], 1e-9), 2)
            for c in args.concurrency
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
