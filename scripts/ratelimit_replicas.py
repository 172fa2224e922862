"""Does one API key's rate limit hold across replicas? Starts a throw-away redis-server and two service
replicas sharing it, drives both at once above the key's limit, and compares the accepted rate with the
configured one.

    python scripts/ratelimit_replicas.py --bundle bundles/current --rate 40 --burst 40 --duration 20 \
        --offered 160 --out docs/results/ratelimit-replicas

Each replica gets `--offered / 2` requests/s (open loop: sent on a fixed schedule, whatever the answers),
POST /v1/recommend with random histories of the bundle's items. The bucket starts full, so over T seconds
the limit admits burst + rate * T requests, T the time the requests were actually sent over (a driver
starved of CPU sends late: T then exceeds --duration); the steady rate is measured after `--settle` seconds.
Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from loadtest import redis_server  # noqa: E402

from scripts.procs import free_port, server, uvicorn_cmd  # noqa: E402
from service.auth.keys import entry_json, new_key  # noqa: E402


def api_item_ids(bundle: Path) -> list[Any]:
    """The bundle's items as the API names them: dense ints, or the catalogue's string ids."""
    from service.api.protocol import HistoryEvent

    dense = HistoryEvent.model_fields["item_id"].annotation is int
    with (bundle / "items.jsonl").open() as f:
        items = [json.loads(line) for line in f if line.strip()]
    return [it["item_id"] if dense else it["raw_id"] for it in items]


def random_bodies(ids: list[Any], n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    bodies = []
    for _ in range(n):
        history = rng.sample(ids, rng.randint(1, min(20, len(ids) - 1)))
        bodies.append(json.dumps({"history": history, "k": rng.choice([5, 10, 20])}).encode())
    return bodies


async def drive(
    url: str, key: str, bodies: list[bytes], per_s: float, duration: float, t0: float
) -> list[dict[str, Any]]:
    """Open loop: one request every 1/per_s s from t0 for `duration` s; returns one record per request."""
    records: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def one(sent: float, body: bytes) -> None:
            try:
                r = await client.post("/v1/recommend", content=body)
                status, retry_after = r.status_code, r.headers.get("retry-after")
                retry_ms = r.json()["error"]["details"]["retry_after_ms"] if status == 429 else None
            except httpx.HTTPError as e:
                status, retry_after, retry_ms = -1, None, type(e).__name__
            records.append(
                {"t": sent - t0, "status": status, "retry_after": retry_after, "retry_ms": retry_ms}
            )

        tasks = []
        i = 0
        late = 0.0
        while True:
            due = t0 + i / per_s
            if due - t0 >= duration:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            sent = time.monotonic()
            late = max(late, sent - due)
            tasks.append(asyncio.create_task(one(sent, bodies[i % len(bodies)])))
            i += 1
        await asyncio.gather(*tasks)
    records.append({"t": None, "driver_late_s": late})
    return records


async def drive_all(
    urls: list[str], key: str, bodies: list[bytes], args: argparse.Namespace
) -> list[list[dict[str, Any]]]:
    t0 = time.monotonic() + 0.2
    per_replica = args.offered / len(urls)
    runs = [drive(u, key, bodies[i::2], per_replica, args.duration, t0) for i, u in enumerate(urls)]
    return list(await asyncio.gather(*runs))


def summarise(per_replica: list[list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    lateness = [r["driver_late_s"] for rs in per_replica for r in rs if r["t"] is None]
    per_replica = [[r for r in rs if r["t"] is not None] for rs in per_replica]
    records = [r for rs in per_replica for r in rs]
    ok = [r for r in records if r["status"] == 200]
    limited = [r for r in records if r["status"] == 429]
    sent_over = max(r["t"] for r in records) - min(r["t"] for r in records) + len(per_replica) / args.offered
    expected = args.burst + args.rate * sent_over
    steady = [r for r in ok if r["t"] >= args.settle]
    steady_rate = len(steady) / (sent_over - args.settle)
    per_second = Counter(int(r["t"]) for r in ok)
    return {
        "configured_rate_per_s": args.rate,
        "burst": args.burst,
        "duration_s": args.duration,
        "sent_over_s": sent_over,
        "driver_late_max_s": max(lateness),
        "offered_per_s": args.offered,
        "sent": len(records),
        "accepted": len(ok),
        "expected_accepted": expected,
        "deviation_pct": 100 * (len(ok) - expected) / expected,
        "steady_window_s": [args.settle, sent_over],
        "steady_accepted_per_s": steady_rate,
        "steady_deviation_pct": 100 * (steady_rate - args.rate) / args.rate,
        "accepted_per_replica": [sum(r["status"] == 200 for r in rs) for rs in per_replica],
        "rejected_429": len(limited),
        "other_statuses": dict(Counter(str(r["status"]) for r in records if r["status"] not in (200, 429))),
        "retry_after_header_seen": dict(Counter(str(r["retry_after"]) for r in limited)),
        "retry_after_ms_max": max((r["retry_ms"] for r in limited), default=None),
        "accepted_per_second": [per_second.get(s, 0) for s in range(max(1, round(sent_over)))],
    }


def metric_sum(url: str, name: str) -> float:
    """The sum of a metric's samples on a replica's /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name
    )


def write_report(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    r = report
    lines = [
        "# Per-key rate limit across two replicas (one Redis)",
        "",
        f"Command: `{r['command']}`",
        f"Machine: {r['machine']}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in r['load_average'])}. Bundle: `{r['bundle']}` {r['bundle_note']}".rstrip(),
        "",
        f"Two replicas (`uvicorn --factory service.main:create_app`, `SEQREC_LLM_BACKEND=none`) share one "
        f"redis-server; one key limited to {r['configured_rate_per_s']:g} requests/s, burst {r['burst']}. Both "
        f"replicas were driven at once for {r['duration_s']:g} s at {r['offered_per_s']:g} requests/s in all "
        "(open loop, POST /v1/recommend, random histories of the bundle's items).",
        "",
        "| | value |",
        "|---|---|",
        f"| requests sent | {r['sent']} over {r['sent_over_s']:.2f} s (driver at most {r['driver_late_max_s']:.2f} s late) |",
        f"| accepted (200) | {r['accepted']} (per replica: {', '.join(map(str, r['accepted_per_replica']))}) |",
        f"| expected: burst + rate × time sent over | {r['expected_accepted']:.0f} |",
        f"| deviation | {r['deviation_pct']:+.1f} % |",
        f"| steady accepted rate, {r['steady_window_s'][0]:g}–{r['steady_window_s'][1]:.1f} s | "
        f"{r['steady_accepted_per_s']:.2f} /s ({r['steady_deviation_pct']:+.1f} % vs {r['configured_rate_per_s']:g}) |",
        f"| refused (429) | {r['rejected_429']} (seqrec_rate_limited_total over both replicas: {r['seqrec_rate_limited_total']:g}) |",
        f"| requests let through unchecked (seqrec_ratelimit_errors_total) | {r['seqrec_ratelimit_errors_total']:g} |",
        f"| Retry-After headers seen | {r['retry_after_header_seen']} (largest details.retry_after_ms: {r['retry_after_ms_max']}) |",
        f"| other statuses | {r['other_statuses'] or 'none'} |",
        "",
        f"Accepted per second: {r['accepted_per_second']}",
        "",
        f"Verdict: {'within' if abs(r['deviation_pct']) <= 10 and abs(r['steady_deviation_pct']) <= 10 else 'OUTSIDE'} "
        "the ±10 % target. Without a shared bucket each replica would admit the full rate (twice the limit in all).",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="bundles/current")
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument(
        "--offered", type=float, default=160.0, help="requests/s sent in all (half per replica)"
    )
    parser.add_argument("--settle", type=float, default=5.0, help="seconds left out of the steady rate")
    parser.add_argument("--out", default="docs/results/ratelimit-replicas")
    parser.add_argument(
        "--machine", default=f"{os.cpu_count()} cores shared with other jobs ({platform.machine()})"
    )
    parser.add_argument("--bundle-note", default="", help="how the bundle was made, for the report")
    parser.add_argument(
        "--write-bodies", help="only write random request bodies (JSON lines) here, for loadtest.py"
    )
    args = parser.parse_args()
    bundle = Path(args.bundle).resolve()
    if args.write_bodies:
        Path(args.write_bodies).write_bytes(b"\n".join(random_bodies(api_item_ids(bundle), 2000)) + b"\n")
        return
    raw, entry = new_key("loadtest", ["recommend"])
    bodies = random_bodies(api_item_ids(bundle), 2000)
    with redis_server() as redis_url:
        env = {
            "SEQREC_BUNDLE_DIR": str(bundle), "SEQREC_LLM_BACKEND": "none", "SEQREC_LOG_LEVEL": "warning",
            "SEQREC_REDIS_URL": redis_url, "SEQREC_API_KEYS": f"[{entry_json(entry)}]",
            "SEQREC_RATE_LIMIT_PER_S": str(args.rate), "SEQREC_RATE_LIMIT_BURST": str(args.burst),
        }  # fmt: skip
        ports = [free_port(), free_port()]
        with server(uvicorn_cmd(ports[0]), env, ports[0]) as srv_a, server(uvicorn_cmd(ports[1]), env, ports[1]) as srv_b:
            a, b = srv_a.url, srv_b.url
            per_replica = asyncio.run(drive_all([a, b], raw, bodies, args))
            report = summarise(per_replica, args)
            for metric in ("seqrec_rate_limited_total", "seqrec_ratelimit_errors_total"):
                report[metric] = metric_sum(a, metric) + metric_sum(b, metric)
    report.update(
        command="python scripts/ratelimit_replicas.py " + shlex.join(sys.argv[1:]),
        machine=args.machine, bundle=args.bundle, bundle_note=args.bundle_note, load_average=os.getloadavg(),
    )  # fmt: skip
    write_report(report, Path(args.out))
    print(json.dumps({k: v for k, v in report.items() if k != "accepted_per_second"}, indent=1))


if __name__ == "__main__":
    main()
