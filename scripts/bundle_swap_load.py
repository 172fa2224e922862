"""Bundle swaps under load: a `python -m service` (SEQREC_LLM_BACKEND=none) gets steady POST /v1/recommend
traffic from many closed-loop clients with varied histories while POST /v1/admin/bundle swaps between two
bundles every few seconds, and once offers a tampered bundle that must be refused (409). Reports requests,
failures (target 0), swaps ok/refused, and p50/p99 latency of requests that started around a swap vs the rest.

    python scripts/bundle_swap_load.py --duration 25 --clients 32 --swap-every 4
    python scripts/bundle_swap_load.py --bundle bundles/a --bundle-b bundles/b   # your own bundles

Without --bundle/--bundle-b it builds two fixture bundles (tests/service/bundle_factory.py, 2,000 items)
under --work. Writes docs/results/<--name>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from lifecycle_common import (
    Call,
    catalogue_ids,
    client_loop,
    fixture_bundles,
    histories,
    measure_and_report,
    percentiles,
    tampered_copy,
)

AROUND_S = (0.5, 1.0)  # a request "around a swap" started from 0.5 s before it began to 1 s after it ended


async def drive(url: str, args: argparse.Namespace, bundles: list[Path], bad: Path) -> dict[str, Any]:
    bodies = histories(catalogue_ids(bundles[0]), 2000)
    calls: list[Call] = []
    swaps: list[dict[str, Any]] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        clients = [asyncio.create_task(client_loop(http, url, bodies, stop, calls, i)) for i in range(args.clients)]
        start = time.monotonic()
        n, serving = 0, 0  # index in `bundles` of the bundle being served
        while time.monotonic() - start < args.duration - args.swap_every / 2:
            await asyncio.sleep(args.swap_every)
            n += 1
            target = bad if n == 3 else bundles[1 - serving]  # the third swap offers the tampered bundle
            t0 = time.monotonic()
            r = await http.post(f"{url}/v1/admin/bundle", json={"path": str(target)})
            body = r.json()
            if r.status_code == 200:
                serving = 1 - serving
            swaps.append({"t0": t0, "t1": time.monotonic(), "path": str(target), "status": r.status_code,
                          "bundle_id": body.get("bundle_id"), "load_ms": round(body["load_ms"]) if "load_ms" in body else None,
                          "error": body.get("error", {}).get("code") if r.status_code != 200 else None})  # fmt: skip
        await asyncio.sleep(max(0.0, args.duration - (time.monotonic() - start)))
        stop.set()
        await asyncio.gather(*clients)
        metrics = (await http.get(f"{url}/metrics")).text
    return {"calls": calls, "swaps": swaps, "metrics": metrics}


def summarise(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    calls: list[Call] = run["calls"]
    swaps = run["swaps"]
    windows = [(s["t0"] - AROUND_S[0], s["t1"] + AROUND_S[1]) for s in swaps if s["status"] == 200]
    around = [c.end - c.start for c in calls if c.outcome == "200" and any(a <= c.start <= b for a, b in windows)]
    rest = [c.end - c.start for c in calls if c.outcome == "200" and not any(a <= c.start <= b for a, b in windows)]
    failures: dict[str, int] = {}
    for c in calls:
        if c.outcome != "200":
            failures[c.outcome] = failures.get(c.outcome, 0) + 1
    served: dict[str, int] = {}
    for c in calls:
        if c.bundle_id:
            served[c.bundle_id] = served.get(c.bundle_id, 0) + 1
    ok = [s for s in swaps if s["status"] == 200]
    metric_lines = [line for line in run["metrics"].splitlines() if line.startswith("seqrec_bundle_swaps_total")]
    return {
        "settings": {"duration_s": args.duration, "clients": args.clients, "swap_every_s": args.swap_every},
        "requests": len(calls),
        "failures": failures,
        "requests_per_s": round(len(calls) / args.duration, 1),
        "answers_by_bundle": served,
        "swaps_ok": len(ok),
        "swaps_refused": sum(s["status"] == 409 for s in swaps),
        "swaps": [{k: v for k, v in s.items() if k not in ("t0", "t1")} | {"http_ms": round(1000 * (s["t1"] - s["t0"]), 1)}
                  for s in swaps],  # fmt: skip
        "latency_around_swaps": percentiles(around),
        "latency_elsewhere": percentiles(rest),
        "server_metrics": metric_lines,
    }


def table(summary: dict[str, Any]) -> list[str]:
    a, e = summary["latency_around_swaps"], summary["latency_elsewhere"]
    lines = [
        f"- requests: {summary['requests']} ({summary['requests_per_s']} req/s), failures: "
        f"{sum(summary['failures'].values())} {summary['failures'] or ''}",
        f"- answers by bundle: {summary['answers_by_bundle']}",
        f"- swaps ok: {summary['swaps_ok']}, refused: {summary['swaps_refused']} (the tampered bundle; the old one kept serving)",
        "",
        "| requests that started | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        f"| around a swap (0.5 s before to 1 s after) | {a.get('n')} | {a.get('p50_ms')} | {a.get('p99_ms')} | {a.get('max_ms')} |",
        f"| elsewhere | {e.get('n')} | {e.get('p50_ms')} | {e.get('p99_ms')} | {e.get('max_ms')} |",
        "",
        "| swap | HTTP status | bundle | load ms (server) | POST ms (client) |",
        "|---|---|---|---|---|",
    ]
    for i, s in enumerate(summary["swaps"], 1):
        lines.append(f"| {i} | {s['status']} {s['error'] or ''} | {s['bundle_id'] or '-'} | {s['load_ms'] or '-'} | {s['http_ms']} |")
    lines += ["", "Server counters at the end:", "", *[f"    {m}" for m in summary["server_metrics"]]]
    lines += ["", "Closed-loop clients on the same 2 shared cores as the server (and other engineers' jobs): the "
              "absolute latencies are mostly queueing for the CPU; compare the two rows. Load ms: the server's "
              "time to load and verify the new bundle (checksums, encoder probe, index) beside the old one."]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, help="first bundle (default: a fixture bundle built under --work)")
    p.add_argument("--bundle-b", type=Path, help="second bundle")
    p.add_argument("--work", type=Path, default=Path("/tmp/seqrec-lifecycle"))
    p.add_argument("--duration", type=float, default=25.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--swap-every", type=float, default=4.0)
    p.add_argument("--name", default="bundle-swap-load")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.bundle and args.bundle_b:
        bundles = [args.bundle.resolve(), args.bundle_b.resolve()]
    else:
        bundles = list(fixture_bundles(args.work))
    bad = tampered_copy(bundles[0], args.work / "bundle-tampered")
    env = {"SEQREC_BUNDLE_DIR": str(bundles[0]), "SEQREC_BUNDLE_WATCH_S": "0"}
    measure_and_report(args, env, lambda _, url: drive(url, args, bundles, bad), summarise, table)


if __name__ == "__main__":
    main()
