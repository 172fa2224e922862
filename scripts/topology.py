"""A multi-replica topology on one machine (issue 14, item 4): one redis-server, --replicas API replicas (`python
-m service`, their sessions in that Redis), HAProxy in front (scripts/balancer.py: health checks on /readyz,
replays only of what may run twice), and with `--llm remote` one OpenAI-compatible LLM server that every replica
calls. Measured in one run:

1. sessions across replicas: each session created through replica r1's own port, appended to through r2's,
   read back through r1, r2 and the balancer;
2. a replica stopped under load: wrk through HAProxy (POST /v1/recommend, the same bodies as below),
   the last replica gets SIGTERM (graceful: /readyz 503, drain, in-flight requests finish), is restarted on its
   port, then gets SIGKILL; failed requests against the requests it held at that moment (HAProxy's log: those
   it had forwarded there and not yet answered; the replica's own in-flight gauge as a cross-check);
3. throughput (wrk, same bodies and connections, --rounds alternating rounds, median): through HAProxy to all
   replicas, through HAProxy to one, and straight to one replica (the balancer's own cost).

    python scripts/topology.py --bundle bundles/current --preset ml-100k

Without --bundle: a fixture bundle (tests/service/bundle_factory.py) built under --work; without --preset:
synthetic histories (scripts/lifecycle_common.histories). Every process is on loopback, on one machine: its
cores are shared by the load driver, HAProxy, Redis and every replica. Writes docs/results/<--name>.md/.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from scripts import balancer, procs  # noqa: E402
from scripts.lifecycle_common import (  # noqa: E402
    catalogue_ids,
    fixture_bundles,
    histories,
    machine,
    write_report,
)
from scripts.loadtest import run_wrk, write_bodies  # noqa: E402
from scripts.topology_report import summarise_fault, table  # noqa: E402

logger = logging.getLogger("topology")


@dataclass
class Topology:
    """The running processes; `replicas` maps a server name (r1, r2...) to its process."""

    stack: ExitStack
    env: dict[str, str]
    work: Path
    ports: dict[str, int]
    replicas: dict[str, procs.Running] = field(default_factory=dict)
    lb: balancer.Balancer | None = None

    def replica(self, name: str) -> Any:
        return procs.service(self.env, main=True, port=self.ports[name], log=self.work / f"{name}.log")

    def restart(self, name: str) -> None:
        self.replicas[name] = self.stack.enter_context(self.replica(name))


@contextmanager
def llm_server(args: argparse.Namespace, bundle: Path) -> Iterator[dict[str, str]]:
    """--llm remote: one LLM server for every replica (service.llm.remote_server, an OpenAI-compatible vLLM
    server for the bundle's model); yields the replicas' LLM settings. Ready when /v1/models answers: the
    OpenAI API's own listing, served once the model is loaded."""
    if args.llm == "none":
        yield {"SEQREC_LLM_BACKEND": "none"}
        return
    port = procs.free_port()
    cmd = [sys.executable, "-m", "service.llm.remote_server", "--bundle", str(bundle), "--port", str(port)]
    with procs.server(cmd, {}, port, "/v1/models", timeout_s=900, log=args.work / "llm-server.log"):
        # the LLM shares these 2 CPU cores with everything else: the check is that every replica reaches the one
        # server, not how fast a CPU writes (the default deadline would turn slow answers into "timeout")
        yield {"SEQREC_LLM_BACKEND": "openai", "SEQREC_LLM_URL": f"http://127.0.0.1:{port}/v1",
               "SEQREC_EXPLAIN_DEADLINE_MS": str(args.explain_deadline_ms)}


@contextmanager
def topology(args: argparse.Namespace, bundle: Path) -> Iterator[Topology]:
    with ExitStack() as stack:
        redis = procs.Redis(args.work / "redis", persist=False).start()
        stack.callback(redis.stop)
        llm_env = stack.enter_context(llm_server(args, bundle))
        env = {"SEQREC_BUNDLE_DIR": str(bundle), "SEQREC_BUNDLE_WATCH_S": "0", "SEQREC_REDIS_URL": redis.url,
               "SEQREC_SHUTDOWN_DRAIN_S": str(args.drain), "SEQREC_SHUTDOWN_GRACE_S": "20", **llm_env}  # fmt: skip
        ports = {f"r{i + 1}": procs.free_port() for i in range(args.replicas)}
        topo = Topology(stack, env, args.work, ports)
        started = procs.enter_all(stack, [topo.replica(name) for name in ports])
        topo.replicas = dict(zip(ports, started, strict=True))
        topo.lb = stack.enter_context(balancer.haproxy(ports, args.work, args.balance, args.check_ms, args.connect_ms))
        yield topo


async def sessions_across(topo: Topology, items: list[str], n: int) -> dict[str, Any]:
    """n sessions: created through r1, appended to through r2, read through r1, r2 and the balancer."""
    assert topo.lb is not None
    a, b, lb = topo.replicas["r1"].url, topo.replicas["r2"].url, topo.lb.url
    token = f"{random.randrange(16**8):08x}"  # a fresh Redis each run; a token all the same
    rng = random.Random(0)
    counts = {"sessions": n, "created_via_r1": 0, "appended_via_r2": 0, "read_via_r1": 0, "read_via_r2": 0,
              "read_via_balancer": 0}  # fmt: skip
    sem = asyncio.Semaphore(8)

    async def one(i: int, http: httpx.AsyncClient) -> None:
        sid = f"topo-{token}-{i}"
        picked = rng.sample(items, rng.randint(2, 20))
        first, second = picked[: len(picked) // 2], picked[len(picked) // 2 :]
        async with sem:
            if (await http.post(f"{a}/v1/sessions/{sid}/events", json={"events": first})).status_code == 200:
                counts["created_via_r1"] += 1
            r = await http.post(f"{b}/v1/sessions/{sid}/events", json={"events": second})
            if r.status_code == 200 and r.json()["history"] == picked:
                counts["appended_via_r2"] += 1
            for name, url in (("r1", a), ("r2", b), ("balancer", lb)):
                r = await http.get(f"{url}/v1/sessions/{sid}")
                counts[f"read_via_{name}"] += r.status_code == 200 and r.json()["history"] == picked

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(one(i, http) for i in range(n)))
    counts["all_read_back"] = all(counts[k] == n for k in counts if k.startswith(("read_", "created", "appended")))
    return counts


async def llm_through_each(topo: Topology, hists: list[list[str]], per_target: int) -> dict[str, Any]:
    """--llm remote: explained answers (k=3, explain=true, the LLM writing on the one shared server) asked
    through every replica's own port and through the balancer, `per_target` distinct histories each, a few at
    a time; counts each answer's explanation_status per target, and the slowest answer."""
    assert topo.lb is not None
    targets = {**{name: r.url for name, r in topo.replicas.items()}, "balancer": topo.lb.url}
    status: dict[str, dict[str, int]] = {name: {} for name in targets}
    slowest = 0.0
    sem = asyncio.Semaphore(4)

    async def one(http: httpx.AsyncClient, name: str, history: list[str]) -> None:
        nonlocal slowest
        async with sem:
            t = time.monotonic()
            r = await http.post(f"{targets[name]}/v1/recommend", json={"history": history, "k": 3, "explain": True})
            slowest = max(slowest, time.monotonic() - t)
        key = r.json().get("explanation_status", "?") if r.status_code == 200 else f"http {r.status_code}"
        status[name][key] = status[name].get(key, 0) + 1

    picks = iter(random.Random(1).sample(hists, per_target * len(targets)))
    async with httpx.AsyncClient(timeout=600) as http:
        await asyncio.gather(*(one(http, name, next(picks)) for name in targets for _ in range(per_target)))
    return {"per_target": per_target, "status": status, "slowest_s": round(slowest, 2),
            "all_ok": all(s == {"ok": per_target} for s in status.values())}  # fmt: skip


async def replica_inflight(http: httpx.AsyncClient, url: str) -> float | None:
    """The replica's own gauge: requests holding its bundle (the recommend handlers running)."""
    try:
        text = (await http.get(f"{url}/metrics")).text
    except httpx.HTTPError:
        return None
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("seqrec_bundle_generation_inflight{"))  # fmt: skip


async def stop_under_load(topo: Topology, victim: str, sig: signal.Signals, args: argparse.Namespace,
                          bodies: Path) -> dict[str, Any]:  # fmt: skip
    """wrk through HAProxy (--clients connections, C: the replicas, not the driver, are the bottleneck, so
    requests really are in flight at them); `sig` to `victim` after --before s; --after s more of load."""
    assert topo.lb is not None
    proc, states = topo.replicas[victim].proc, []
    wall_start = time.time()
    duration = round(args.before + args.after)
    wrk = asyncio.create_task(asyncio.to_thread(run_wrk, topo.lb.url, bodies, args.clients, duration))
    async with httpx.AsyncClient(timeout=5) as probe:
        await asyncio.sleep(args.before)
        t_scrape = time.monotonic()
        gauge = await replica_inflight(probe, topo.replicas[victim].url)
        t_signal, wall = time.monotonic(), time.time()
        proc.send_signal(sig)
        while not wrk.done():
            text = (await probe.get(f"{topo.lb.url}{balancer.STATS};csv")).text
            states.append((round(time.monotonic() - t_signal, 2), balancer.server_status(text, "api", victim)))
            await asyncio.sleep(0.1)
    returncode = await asyncio.to_thread(proc.wait, 30)
    await asyncio.sleep(0.3)  # HAProxy writes a request's log line when it ends; let the last ones land
    return {"signal": sig.name, "victim": victim, "wrk": await wrk, "wall_start": wall_start, "wall_signal": wall,
            "gauge": gauge, "gauge_scraped_ms_before": round(1000 * (t_signal - t_scrape), 1),
            "states": states, "returncode": returncode, "log": balancer.read_log(topo.lb.log)}  # fmt: skip


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_with_cpu(url: str, bodies: Path, connections: int, duration: int, pids: dict[str, int]) -> dict[str, Any]:
    """run_wrk, plus the cores each process used meanwhile (wrk's own from this process's waited children):
    where 2 cores went."""
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_wrk(url, bodies, connections, duration)
    used = {name: cpu_s(pid) - before[name] for name, pid in pids.items()}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used["wrk"] = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    result["cpu_cores"] = {name: round(s / result["duration_s"], 2) for name, s in used.items()}
    return result


def throughput(topo: Topology, bodies: Path, args: argparse.Namespace) -> dict[str, Any]:
    """wrk against each target in turn, --rounds rounds (so other jobs weigh on every target alike)."""
    assert topo.lb is not None
    n = len(topo.replicas)
    targets = {f"haproxy_{n}_replicas": topo.lb.url, "haproxy_1_replica": topo.lb.url_one,
               "direct_1_replica": topo.replicas["r1"].url}  # fmt: skip
    if args.warmup:
        for url in targets.values():
            run_wrk(url, bodies, args.connections, args.warmup)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    pids = {**{name: r.pid for name, r in topo.replicas.items()}, "haproxy": topo.lb.pid}
    for r in range(args.rounds):
        for name, url in targets.items():
            runs[name].append(wrk_with_cpu(url, bodies, args.connections, args.duration, pids))
            logger.info("round %d %s: %.0f req/s", r + 1, name, runs[name][-1]["rps"])
    median = {name: sorted(rs, key=lambda x: x["rps"])[len(rs) // 2] for name, rs in runs.items() if rs}
    return {"connections": args.connections, "duration_s": args.duration, "rounds": args.rounds,
            "median": median, "rps_per_round": {k: [x["rps"] for x in v] for k, v in runs.items()}}  # fmt: skip


def request_bodies(args: argparse.Namespace, bundle: Path) -> tuple[list[list[str]], Path]:
    """Histories for the clients and the same as wrk bodies: real test users' (--preset) or synthetic ones."""
    path = args.work / "bodies.jsonl"
    if args.preset:
        write_bodies(args.preset, path, k=10, explain=False, max_history=200, bundle=bundle)
        return [json.loads(line)["history"] for line in path.read_text().splitlines() if line.strip()], path
    hists = histories(catalogue_ids(bundle), 2000)
    path.write_text("".join(json.dumps({"history": h, "k": 10}) + "\n" for h in hists))
    return hists, path


def measure(args: argparse.Namespace) -> dict[str, Any]:
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle.resolve() if args.bundle else fixture_bundles(args.work)[0]
    hists, bodies_path = request_bodies(args, bundle)
    items = sorted({i for h in hists for i in h})
    out: dict[str, Any] = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    with topology(args, bundle) as topo:
        assert topo.lb is not None
        logger.info("topology up: %s behind %s", {k: r.url for k, r in topo.replicas.items()}, topo.lb.url)
        out["sessions"] = asyncio.run(sessions_across(topo, items, args.sessions))
        if args.llm == "remote":
            out["llm"] = asyncio.run(llm_through_each(topo, hists, args.llm_requests))
        if args.rounds:
            out["throughput"] = throughput(topo, bodies_path, args)
        out.update(stop_cases(topo, args, bodies_path))
    return out


def stop_cases(topo: Topology, args: argparse.Namespace, bodies: Path) -> dict[str, Any]:
    """SIGTERM to the last replica, its restart on the same port, then SIGKILL to it (--faults picks)."""
    assert topo.lb is not None
    victim, out = f"r{args.replicas}", {}
    if "sigterm" in args.faults:
        out["sigterm"] = summarise_fault(asyncio.run(stop_under_load(topo, victim, signal.SIGTERM, args, bodies)))
        if "sigkill" in args.faults:
            t_restart = time.monotonic()
            topo.restart(victim)
            asyncio.run(_wait_up(topo.lb, victim))
            out["restart_to_back_in_rotation_s"] = round(time.monotonic() - t_restart, 2)
    if "sigkill" in args.faults:
        out["sigkill"] = summarise_fault(asyncio.run(stop_under_load(topo, victim, signal.SIGKILL, args, bodies)))
    return out


async def _wait_up(lb: balancer.Balancer, server: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        await balancer.wait_up(http, lb, server)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, help="bundle to serve (default: a fixture bundle built under --work)")
    p.add_argument("--preset", help="training preset whose test users' histories are the bodies (e.g. ml-100k)")
    p.add_argument("--work", type=Path, default=Path("/tmp/seqrec-topology"))
    p.add_argument("--replicas", type=int, default=2, choices=range(2, 9), metavar="N (2-8)")
    p.add_argument("--balance", default="leastconn", choices=["leastconn", "roundrobin"])
    p.add_argument("--check-ms", type=int, default=500, help="HAProxy health-check interval (fall 2, rise 1)")
    p.add_argument("--connect-ms", type=int, default=250,
                   help="HAProxy's timeout connect (also its pause before some retries: scripts/balancer.py)")
    p.add_argument("--llm", default="none", choices=["none", "remote"],
                   help="remote: one service.llm.remote_server for every replica (SEQREC_LLM_BACKEND=openai)")
    p.add_argument("--llm-requests", type=int, default=6, help="--llm remote: explained requests per target")
    p.add_argument("--explain-deadline-ms", type=int, default=120000, help="--llm remote: the replicas' deadline")
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--clients", type=int, default=32, help="wrk connections in the stop-under-load runs")
    p.add_argument("--before", type=float, default=5.0, help="seconds of load before the signal")
    p.add_argument("--after", type=float, default=6.0, help="seconds of load after the signal")
    p.add_argument("--drain", type=float, default=2.0, help="SEQREC_SHUTDOWN_DRAIN_S of every replica")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=3, help="seconds of wrk per target before the rounds (0: none)")
    p.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds (0: no throughput runs)")
    p.add_argument("--faults", nargs="+", default=["sigterm", "sigkill"], choices=["sigterm", "sigkill"],
                   help="stop cases to run, in this order (both: the replica is restarted in between)")
    p.add_argument("--name", default="topology", help="docs/results/<name>.md and .json")
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    args = parser().parse_args(argv)
    where = machine()
    summary = measure(args)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    path = write_report(args.name, command, summary, table(summary), where)
    print(path.read_text())


if __name__ == "__main__":
    main()
