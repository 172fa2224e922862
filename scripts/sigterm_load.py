"""SIGTERM under load: a `python -m service` (SEQREC_LLM_BACKEND=none, SEQREC_SHUTDOWN_DRAIN_S=--drain)
serves steady POST /v1/recommend traffic from many closed-loop clients, plus a few slow clients that upload
their body over --slow-upload seconds (requests in flight across the listener's close); then it gets
SIGTERM. Reports the requests in flight at the signal and at the listener's close and how many completed
with 200 (target: every one), the requests answered during the drain, and separately the requests refused
after the listener closed (connection refused: they were never in flight).

    python scripts/sigterm_load.py --clients 32 --before 8 --drain 2

Without --bundle it builds a fixture bundle (tests/service/bundle_factory.py, 2,000 items) under --work.
Writes docs/results/<--name>.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
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
)


async def slow_upload(port: int, body: bytes, upload_s: float, calls: list[Call], delay_s: float) -> None:
    """After `delay_s`, one request whose body trickles in over `upload_s` (a slow client): in flight the
    whole time."""
    await asyncio.sleep(delay_s)
    start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"POST /v1/recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        writer.write(head.encode())
        pieces = 10
        for i in range(pieces):
            writer.write(body[i * len(body) // pieces : (i + 1) * len(body) // pieces])
            await writer.drain()
            await asyncio.sleep(upload_s / pieces)
        status = (await reader.readline()).split()[1].decode()
        writer.close()
        calls.append(Call(start, time.monotonic(), status))
    except OSError as e:
        calls.append(Call(start, time.monotonic(), type(e).__name__))


async def drive(proc: subprocess.Popen[bytes], url: str, args: argparse.Namespace, bundle: Path) -> dict[str, Any]:
    ids = catalogue_ids(bundle)
    bodies = histories(ids, 2000)
    port = int(url.rsplit(":", 1)[1])
    calls: list[Call] = []
    slow: list[Call] = []
    ready: list[tuple[float, int]] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=args.clients + 4)) as http:
        clients = [asyncio.create_task(client_loop(http, url, bodies, stop, calls, i)) for i in range(args.clients)]
        body = json.dumps({"history": bodies[0], "k": 10}).encode()
        # timed to be half-way through their upload when the listener closes (drain seconds after the signal)
        delay = max(0.0, args.before + args.drain - args.slow_upload / 2)
        uploads = [asyncio.create_task(slow_upload(port, body, args.slow_upload, slow, delay)) for _ in range(args.slow)]
        await asyncio.sleep(args.before)
        t_signal = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None and time.monotonic() - t_signal < args.drain + 30:
            try:
                r = await http.get(f"{url}/readyz", timeout=1)
                ready.append((time.monotonic() - t_signal, r.status_code))
            except httpx.HTTPError:
                ready.append((time.monotonic() - t_signal, 0))
            await asyncio.sleep(0.1)
        t_exit = time.monotonic()
        stop.set()
        await asyncio.gather(*clients, *uploads)
    return {"calls": calls, "slow": slow, "t_signal": t_signal, "t_exit": t_exit, "ready": ready,
            "returncode": proc.wait()}  # fmt: skip


def summarise(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    calls: list[Call] = run["calls"] + run["slow"]
    ts = run["t_signal"]
    t_close = ts + args.drain

    def inflight(t: float) -> list[Call]:
        """Requests the server held at `t`: started before, ended after, and not refused at connect time
        (a ConnectError means the listener was closed when the client opened its connection: never in
        flight; they are counted under the listener's close)."""
        return [c for c in calls if c.start < t < c.end and c.outcome != "ConnectError"]

    def outcomes(cs: list[Call]) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in cs:
            out[c.outcome] = out.get(c.outcome, 0) + 1
        return out

    at_signal, at_close = inflight(ts), inflight(t_close)
    during = [c for c in calls if ts <= c.start < t_close]
    after = [c for c in calls if c.start >= t_close]
    refused = [c for c in calls if c.outcome == "ConnectError"]
    first_503 = next((t for t, s in run["ready"] if s == 503), None)
    return {
        "settings": {"clients": args.clients, "before_s": args.before, "drain_s": args.drain,
                     "slow_uploads": args.slow, "slow_upload_s": args.slow_upload},  # fmt: skip
        "requests_before_signal": sum(c.start < ts for c in calls),
        "inflight_at_signal": len(at_signal),
        "inflight_at_signal_outcomes": outcomes(at_signal),
        "inflight_at_listener_close": len(at_close),
        "inflight_at_listener_close_outcomes": outcomes(at_close),
        "slow_uploads_outcomes": outcomes(run["slow"]),
        "started_during_drain": len(during),
        "started_during_drain_outcomes": outcomes(during),
        "started_after_listener_close_outcomes": outcomes(after),
        "refused_at_connect": len(refused),
        "refused_at_connect_first_after_signal_s": round(min(c.start for c in refused) - ts, 2) if refused else None,
        "readyz_first_503_after_signal_s": round(first_503, 2) if first_503 is not None else None,
        "process_exit_after_signal_s": round(run["t_exit"] - ts, 2),
        "returncode": run["returncode"],
        "latency_before_signal": percentiles([c.end - c.start for c in calls if c.end < ts and c.outcome == "200"]),
        "failed_inflight": sum(c.outcome != "200" for c in {id(c): c for c in at_signal + at_close}.values()),
    }


def table(s: dict[str, Any]) -> list[str]:
    return [
        f"- requests before the signal: {s['requests_before_signal']} (latency {s['latency_before_signal']})",
        f"- in flight at SIGTERM: {s['inflight_at_signal']} -> {s['inflight_at_signal_outcomes']}",
        f"- in flight when the listener closed (SIGTERM + drain): {s['inflight_at_listener_close']} -> "
        f"{s['inflight_at_listener_close_outcomes']} (slow uploads: {s['slow_uploads_outcomes']})",
        f"- **failed in-flight requests: {s['failed_inflight']}**",
        f"- started during the drain: {s['started_during_drain']} -> {s['started_during_drain_outcomes']}",
        f"- started after SIGTERM + drain: {s['started_after_listener_close_outcomes']}",
        f"- refused at connect (the listener was closed; never in flight): {s['refused_at_connect']}, the first "
        f"started {s['refused_at_connect_first_after_signal_s']} s after the signal (the listener closes at the first "
        "0.1 s tick past the drain; clients whose keep-alive connection the server closed had to reconnect)",
        f"- /readyz first 503 {s['readyz_first_503_after_signal_s']} s after the signal; process exit after "
        f"{s['process_exit_after_signal_s']} s, return code {s['returncode']} (uvicorn re-raises SIGTERM after a clean shutdown)",
        "",
        "Times are the client's: a request \"starts\" when the client hands it to its connection pool, so one "
        "that waited there for a connection until after the close is refused at connect (ConnectError) although "
        "it \"started\" earlier. A ReadError is a request the client sent whose connection was reset before an "
        "answer: one sent on an idle keep-alive connection just as the shutdown closed it, or one still in the "
        "listen backlog when the listener closed (docs/service.md, \"Shutdown\"); every request the server "
        "was reading (the slow uploads) or answering completed. The clients here keep sending straight to the "
        "replica through the drain, which a load balancer would not.",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, help="bundle to serve (default: a fixture bundle built under --work)")
    p.add_argument("--bundle-b", type=Path, help="accepted for symmetry with bundle_swap_load.py; unused")
    p.add_argument("--work", type=Path, default=Path("/tmp/seqrec-lifecycle"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--before", type=float, default=8.0, help="seconds of load before SIGTERM")
    p.add_argument("--drain", type=float, default=2.0, help="SEQREC_SHUTDOWN_DRAIN_S")
    p.add_argument("--slow", type=int, default=4, help="slow-upload clients in flight across the close")
    p.add_argument("--slow-upload", type=float, default=3.0, help="seconds a slow client takes to send its body")
    p.add_argument("--name", default="sigterm-load")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle.resolve() if args.bundle else fixture_bundles(args.work)[0]
    env = {"SEQREC_BUNDLE_DIR": str(bundle), "SEQREC_BUNDLE_WATCH_S": "0", "SEQREC_SHUTDOWN_DRAIN_S": str(args.drain),
           "SEQREC_SHUTDOWN_GRACE_S": "20"}  # fmt: skip
    measure_and_report(args, env, lambda proc, url: drive(proc, url, args, bundle), summarise, table)


if __name__ == "__main__":
    main()
