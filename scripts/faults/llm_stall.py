"""Fault: the LLM engine hangs; rankings must keep their SLO.

    python -m scripts.faults.llm_stall --delay-ms 20000 --duration 20 --llm-concurrency 8 --rank-concurrency 4

An in-process engine cannot be stalled from outside, so the service's own fault injection does it:
`SEQREC_FAULT_LLM_DELAY_MS` (service/llm/faults.py) holds every engine call that long, ignoring its deadline.
The service runs the tiny random Llama (tests/tiny_llm.py) on the transformers backend and a fixture bundle
with a rerank spec (rerank adapter + soft prompt, as tests/service/llm/test_app_llm.py builds it), under the
default deadlines (SEQREC_RERANK_DEADLINE_MS, SEQREC_EXPLAIN_DEADLINE_MS). The startup's rerank warm-up waits
out the delay once. Two classes of clients run at once: LLM requests (`explain: true`, rerank on by the bundle's
default) and ranking-only requests (`explain: false, rerank: false`).

Criteria: every LLM request answers 200 with its k items within rerank deadline + explain deadline + margin,
`rerank_status` timeout and `explanation_status` timeout or shed; every ranking-only request answers 200 and
their p99 stays under `--slo-ms` while the LLM hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from scripts.faults.common import (
    FaultResult,
    Histories,
    Sample,
    catalogue_ids,
    latency_summary,
    service,
    setup_logging,
    timed,
)


def build(workdir: Path) -> tuple[Path, Path]:
    """(tiny LLM folder, bundle with a rerank spec for it)."""
    from recbundle.rerank import RerankSpec
    from tests.service.bundle_factory import build_bundle
    from tests.service.llm.fixtures import make_lora_adapter, make_soft_prompt
    from tests.tiny_llm import build_tiny_llama

    llm = build_tiny_llama(workdir / "tiny-llm", hidden=64)
    rerank = make_lora_adapter(llm, workdir / "rerank", seed=1)
    soft = np.load(make_soft_prompt(workdir / "soft.npy", n_tokens=4, hidden=64))
    bundle = workdir / "bundle"
    build_bundle(bundle, n_items=500, soft_prompt=soft, rerank=RerankSpec(blend_lambda=5.0), rerank_adapter=rerank)
    return llm, bundle


async def client_loop(client: httpx.AsyncClient, kind: str, body_of: object, t0: float, until: float,
                      out: list[Sample]) -> None:  # fmt: skip
    while time.perf_counter() < until:
        out.append(await timed(client, kind, t0, "POST", "/v1/recommend", body_of()))  # type: ignore[operator]


async def load(url: str, hist: Histories, duration_s: float, llm_c: int, rank_c: int, k: int) -> list[Sample]:
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=llm_c + rank_c + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        until = t0 + duration_s
        tasks = [client_loop(client, "llm", lambda: {"history": hist.one(), "k": k, "explain": True}, t0, until, samples)
                 for _ in range(llm_c)]  # fmt: skip
        tasks += [client_loop(client, "ranking", lambda: {"history": hist.one(), "k": k, "explain": False,
                                                          "rerank": False}, t0, until, samples)
                  for _ in range(rank_c)]  # fmt: skip
        await asyncio.gather(*tasks)
    return samples


def campaign(workdir: Path, *, delay_ms: int, duration_s: float, llm_c: int, rank_c: int, slo_ms: float,
             margin_ms: float = 500, k: int = 5, command: str = "") -> FaultResult:  # fmt: skip
    from service.settings import Settings

    result = FaultResult("llm_stall", command)
    llm, bundle = build(workdir)
    defaults = Settings()
    budget_ms = defaults.rerank_deadline_ms + defaults.explain_deadline_ms + margin_ms
    env = {"SEQREC_LLM_BACKEND": "transformers", "SEQREC_LLM_MODEL": str(llm),
           "SEQREC_FAULT_LLM_DELAY_MS": str(delay_ms)}  # fmt: skip
    result.figures["setup"] = {"delay_ms": delay_ms, "duration_s": duration_s, "llm_concurrency": llm_c,
                               "ranking_concurrency": rank_c, "k": k, "rerank_deadline_ms": defaults.rerank_deadline_ms,
                               "explain_deadline_ms": defaults.explain_deadline_ms, "slo_ms": slo_ms}  # fmt: skip
    started = time.perf_counter()
    with service(bundle, env, timeout_s=delay_ms / 1000 + 240) as svc:
        result.figures["startup_s"] = round(time.perf_counter() - started, 1)
        ready = httpx.get(svc.url + "/readyz").json()
        result.figures["readyz"] = {c: v.get("status") for c, v in ready["components"].items()}
        samples = asyncio.run(load(svc.url, Histories(catalogue_ids(bundle), seed=2), duration_s, llm_c, rank_c, k))
        metrics = httpx.get(svc.url + "/metrics").text
    llm_s = [s for s in samples if s.kind == "llm"]
    rank_s = [s for s in samples if s.kind == "ranking"]
    result.figures["llm_requests"] = latency_summary([s.ms for s in llm_s])
    result.figures["ranking_requests"] = latency_summary([s.ms for s in rank_s])
    statuses: dict[str, int] = {}
    for s in llm_s:
        key = f"{s.status} rerank={(s.body or {}).get('rerank_status')} explanation={(s.body or {}).get('explanation_status')}"
        statuses[key] = statuses.get(key, 0) + 1
    result.figures["llm_answers"] = statuses
    result.figures["metrics"] = [line for line in metrics.splitlines() if line.startswith(
        ("seqrec_rerank_fallback_total", "seqrec_explanation_timeouts_total", "seqrec_explanations_shed_total"))]

    bad = [s for s in llm_s if s.status != 200 or len((s.body or {}).get("items", [])) != k or s.ms > budget_ms
           or s.body.get("rerank_status") != "timeout"
           or s.body.get("explanation_status") not in {"timeout", "shed"}]  # fmt: skip
    result.check(
        f"LLM requests: 200 with {k} items within rerank + explain deadline + {margin_ms:g} ms ({budget_ms:g} ms), "
        "rerank_status timeout, explanation_status timeout or shed",
        bool(llm_s) and not bad,
        f"{len(llm_s)} requests, max {result.figures['llm_requests']['max_ms']} ms, {len(bad)} outside"
        + (f", e.g. {bad[0].status} {bad[0].ms:.0f} ms {str(bad[0].body)[:300]}" if bad else ""),
    )
    p99 = result.figures["ranking_requests"]["p99_ms"]
    failed = [s for s in rank_s if s.status != 200]
    result.check(
        f"ranking-only requests: all 200, p99 < {slo_ms:g} ms while the LLM hangs",
        bool(rank_s) and not failed and p99 < slo_ms,
        f"{len(rank_s)} requests, {len(failed)} not 200, p50 {result.figures['ranking_requests']['p50_ms']} ms, "
        f"p99 {p99} ms",
    )
    return result


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--delay-ms", type=int, default=20000, help="every LLM call stalls this long (startup pays it once)")
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--llm-concurrency", type=int, default=8)
    p.add_argument("--rank-concurrency", type=int, default=4)
    p.add_argument("--slo-ms", type=float, default=50)


def run(args: argparse.Namespace, command: str) -> FaultResult:
    with tempfile.TemporaryDirectory(prefix="fault-llm-") as tmp:
        return campaign(Path(tmp), delay_ms=args.delay_ms, duration_s=args.duration, llm_c=args.llm_concurrency,
                        rank_c=args.rank_concurrency, slo_ms=args.slo_ms, command=command)  # fmt: skip


if __name__ == "__main__":
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_args(parser)
    r = run(parser.parse_args(), "python -m scripts.faults.llm_stall " + " ".join(sys.argv[1:]))
    print(r.as_dict())
    sys.exit(0 if r.passed else 1)
