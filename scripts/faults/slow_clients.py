"""Fault: slow clients (slowloris bodies, slow readers of the SSE route) beside normal clients.

    python -m scripts.faults.slow_clients --slow 50 --readers 10 --phase 15 --concurrency 8

Three phases against one service process (no LLM): (1) baseline: normal clients only; (2) the same normal
load while `--slow` clients send their headers and a valid JSON body `--bytes-per-s` bytes per second, `--stalled`
clients send half a body and then nothing, and `--readers` clients request POST /v1/recommend/stream and
read the answer one byte per second; (3) every slow client closed, then the process's open file descriptors
are counted again.

Criteria: normal clients' p99 in phase 2 within `--p99-factor` x baseline p99 + 10 ms, no errors for normal
clients, open fds back to the baseline (+-2) after the slow clients leave; stalled bodies answered 408
`body_timeout` within SEQREC_BODY_TIMEOUT_S (`--body-timeout`, 12 s here) + 2 s while slow bodies that complete
in time get 200. uvicorn's --timeout-keep-alive covers idle keep-alive connections between requests only and
h11/httptools set no deadline on reading a body: without the service's body deadline (`--body-timeout -1` on a
service without it) a stalled body is held for as long as the client likes, which is reported as a finding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from scripts.faults.common import (
    FaultResult,
    Histories,
    Sample,
    catalogue_ids,
    fixture_bundle,
    latency_summary,
    open_fds,
    service,
    setup_logging,
    timed,
)


@dataclass
class SlowOutcome:
    kind: str  # "slow_body", "stalled_body", "slow_reader"
    sent_all: bool = False
    answered: int | None = None  # HTTP status read back, if any
    answered_s: float | None = None  # seconds after connecting that the status line came
    cut_by_server_s: float | None = None  # seconds after connecting that the server closed it, if it did


def _split(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def slow_body(url: str, body: bytes, bytes_per_s: float, stall: bool, until: float) -> SlowOutcome:
    out = SlowOutcome("stalled_body" if stall else "slow_body")
    host, port = _split(url)
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST /v1/recommend HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    try:
        writer.write(head)
        await writer.drain()
        todo = body[: len(body) // 2] if stall else body
        step = max(1, int(bytes_per_s))
        for i in range(0, len(todo), step):
            if time.perf_counter() > until:
                break
            writer.write(todo[i : i + step])
            await writer.drain()
            await asyncio.sleep(1.0)
        out.sent_all = not stall and time.perf_counter() <= until
        remaining = max(until - time.perf_counter(), 0.1)
        try:
            line = await asyncio.wait_for(reader.readline(), remaining)
        except TimeoutError:
            return out
        if line.startswith(b"HTTP/1.1 "):
            out.answered = int(line.split()[1])
            out.answered_s = time.perf_counter() - start
        elif not line:
            out.cut_by_server_s = time.perf_counter() - start
    except (ConnectionError, OSError):
        out.cut_by_server_s = time.perf_counter() - start
    finally:
        writer.close()
    return out


async def slow_reader(url: str, body: bytes, until: float) -> SlowOutcome:
    out = SlowOutcome("slow_reader")
    host, port = _split(url)
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port, limit=64)
    writer.write((f"POST /v1/recommend/stream HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode() + body)  # fmt: skip
    await writer.drain()
    out.sent_all = True
    got = b""
    try:
        while time.perf_counter() < until:
            chunk = await asyncio.wait_for(reader.read(1), max(until - time.perf_counter(), 0.01))
            if not chunk:
                out.cut_by_server_s = time.perf_counter() - start
                break
            got += chunk
            if got.startswith(b"HTTP/1.1 ") and out.answered is None and len(got) >= 12:
                out.answered = int(got.split()[1])
            await asyncio.sleep(1.0)
    except (TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return out


async def normal_load(url: str, hist: Histories, concurrency: int, seconds: float) -> list[Sample]:
    samples: list[Sample] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        t0 = time.perf_counter()

        async def loop() -> None:
            while time.perf_counter() < t0 + seconds:
                samples.append(await timed(client, "normal", t0, "POST", "/v1/recommend", {"history": hist.one(), "k": 10}))

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return samples


async def phases(url: str, pid: int, hist: Histories, args: argparse.Namespace) -> dict[str, object]:
    await normal_load(url, hist, args.concurrency, 2)  # warm-up
    await asyncio.sleep(1)
    fds_before = open_fds(pid)
    baseline = await normal_load(url, hist, args.concurrency, args.phase)
    until = time.perf_counter() + max(args.phase + 2, (args.body_timeout or 0) + 3)  # stalled ones see the deadline
    body = json.dumps({"history": hist.one(6), "k": 5}).encode()
    slow = [asyncio.create_task(slow_body(url, body, args.bytes_per_s, False, until)) for _ in range(args.slow)]
    slow += [asyncio.create_task(slow_body(url, body, args.bytes_per_s, True, until)) for _ in range(args.stalled)]
    slow += [asyncio.create_task(slow_reader(url, body, until)) for _ in range(args.readers)]
    await asyncio.sleep(1)
    fds_during = open_fds(pid)
    loaded = await normal_load(url, hist, args.concurrency, args.phase)
    outcomes = await asyncio.gather(*slow)
    await asyncio.sleep(2)
    fds_after = open_fds(pid)
    return {"baseline": baseline, "loaded": loaded, "outcomes": outcomes, "fds": (fds_before, fds_during, fds_after),
            "body_bytes": len(body)}  # fmt: skip


def campaign(workdir: Path, args: argparse.Namespace, command: str = "") -> FaultResult:
    result = FaultResult("slow_clients", command)
    bundle = fixture_bundle(workdir / "bundle", n_items=500)
    hist = Histories(catalogue_ids(bundle), seed=4)
    env = {"SEQREC_LLM_BACKEND": "none"}
    if args.body_timeout is not None:
        env["SEQREC_BODY_TIMEOUT_S"] = str(args.body_timeout)
    with service(bundle, env) as svc:
        out = asyncio.run(phases(svc.url, svc.pid, hist, args))
    base, loaded = latency_summary([s.ms for s in out["baseline"]]), latency_summary([s.ms for s in out["loaded"]])  # type: ignore[attr-defined]
    fds_before, fds_during, fds_after = out["fds"]  # type: ignore[misc]
    outcomes: list[SlowOutcome] = out["outcomes"]  # type: ignore[assignment]
    summary: dict[str, dict[str, int]] = {}
    for o in outcomes:
        s = summary.setdefault(o.kind, {"clients": 0, "sent_all": 0, "answered_200": 0, "answered_408": 0,
                                        "cut_by_server": 0, "max_answer_s": 0.0})  # fmt: skip
        s["clients"] += 1
        s["sent_all"] += o.sent_all
        s["answered_200"] += o.answered == 200
        s["answered_408"] += o.answered == 408
        s["cut_by_server"] += o.cut_by_server_s is not None
        s["max_answer_s"] = round(max(s["max_answer_s"], o.answered_s or 0.0), 2)
    result.figures |= {"setup": {"slow": args.slow, "stalled": args.stalled, "readers": args.readers, "phase_s": args.phase,
                                 "bytes_per_s": args.bytes_per_s, "body_bytes": out["body_bytes"],
                                 "normal_concurrency": args.concurrency},
                       "normal_baseline": base, "normal_with_slow_clients": loaded, "slow_clients": summary,
                       "open_fds": {"before": fds_before, "with_slow_clients": fds_during, "after": fds_after}}  # fmt: skip
    bound = args.p99_factor * base["p99_ms"] + 10
    errors = [s for s in out["baseline"] + out["loaded"] if s.status != 200]  # type: ignore[operator]
    result.check(f"normal clients' p99 with slow clients <= {args.p99_factor:g} x baseline p99 + 10 ms",
                 loaded["p99_ms"] <= bound, f"baseline p99 {base['p99_ms']} ms, with slow clients {loaded['p99_ms']} ms "
                 f"(bound {bound:.1f} ms); p50 {base['p50_ms']} -> {loaded['p50_ms']} ms")  # fmt: skip
    result.check("no errors for normal clients", not errors and base["n"] > 0 and loaded["n"] > 0,
                 f"{base['n'] + loaded['n']} requests, {len(errors)} errors")
    result.check("open fds back to the baseline (+-2) after the slow clients leave", abs(fds_after - fds_before) <= 2,
                 f"{fds_before} before, {fds_during} with {len(outcomes)} slow clients, {fds_after} after")
    stalled, slow_ok = summary.get("stalled_body", {}), summary.get("slow_body", {})
    if args.body_timeout is not None:
        result.check(f"stalled bodies answered 408 body_timeout within SEQREC_BODY_TIMEOUT_S ({args.body_timeout:g} s) "
                     "+ 2 s; slow bodies that complete in time answered 200",
                     stalled.get("answered_408") == stalled.get("clients") and stalled.get("max_answer_s", 99) <= args.body_timeout + 2
                     and slow_ok.get("answered_200") == slow_ok.get("clients"),
                     f"stalled: {stalled.get('answered_408')}/{stalled.get('clients')} got 408 (latest {stalled.get('max_answer_s')} s "
                     f"after connecting); slow: {slow_ok.get('answered_200')}/{slow_ok.get('clients')} got 200")  # fmt: skip
    elif stalled and not stalled["cut_by_server"] and not stalled["answered_408"]:
        result.notes.append(
            f"finding: nothing bounds a slow or stalled request body: {stalled['clients']} clients that sent half a "
            f"body and then nothing for {args.phase + 2:g} s were never cut by the server, and each held a "
            "connection, a file descriptor and a parked request task all that time (uvicorn's --timeout-keep-alive "
            "applies between requests only; h11 and httptools set no body-read deadline). Bound it in front of the "
            "service (a proxy's client_body_timeout) or with a body-read deadline in the service (not added here)."
        )
    return result


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slow", type=int, default=50, help="clients sending a valid body --bytes-per-s bytes per second")
    p.add_argument("--stalled", type=int, default=5, help="clients sending half a body, then nothing")
    p.add_argument("--readers", type=int, default=10, help="clients reading POST /v1/recommend/stream 1 byte/s")
    p.add_argument("--bytes-per-s", type=float, default=8)
    p.add_argument("--phase", type=float, default=15, help="seconds of normal load per phase")
    p.add_argument("--concurrency", type=int, default=8, help="normal clients")
    p.add_argument("--p99-factor", type=float, default=2.0)
    p.add_argument("--body-timeout", type=float, default=12,
                   help="SEQREC_BODY_TIMEOUT_S of the service (its default is 30 s; 12 cuts the stalled clients within "
                   "the phase and lets the slow ones finish); a negative value leaves the setting unset")


def run(args: argparse.Namespace, command: str) -> FaultResult:
    if args.body_timeout is not None and args.body_timeout < 0:
        args.body_timeout = None
    with tempfile.TemporaryDirectory(prefix="fault-slow-") as tmp:
        return campaign(Path(tmp), args, command)


if __name__ == "__main__":
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_args(parser)
    r = run(parser.parse_args(), "python -m scripts.faults.slow_clients " + " ".join(sys.argv[1:]))
    print(json.dumps(r.as_dict(), indent=1, default=str))
    sys.exit(0 if r.passed else 1)
