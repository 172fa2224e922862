"""HAProxy in front of the API replicas, for scripts/topology.py: the generated configuration, the process (in the
foreground, its log on stdout, in a file), its stats page and its request log.

What HAProxy replays, and why that is safe (`retry-on`, `http-request disable-l7-retry` below):
- a connection that could not be opened (`conn-failure`: refused, timed out) is retried for every request, on
  the other replica (`option redispatch 1`): the request never left HAProxy, so nothing ran twice;
- a connection closed before any byte of an answer (`empty-response`: the replica died or closed its listener
  with the request in it) is retried only for requests that may run twice: GET/HEAD and POST /v1/recommend
  without a `session_id`, a pure read of the index and model. A recommend call that names a session appends
  its events to the stored session, and POST /v1/sessions/{id}/events appends too; DELETE would answer 404 on
  a replay after the first try deleted the session. Those get `conn-failure` only: a replica that dies while
  holding one fails it, and the client must decide (it cannot know whether the append happened).
The body is inspected for the literal `session_id`, and any `\\u` escape in the body also disables the replay
(a JSON key may spell `session_id` with escapes). A false match only costs a retry, never a double write.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from scripts import procs

STATS = "/lb-stats"
MONITOR = "/lb-health"  # answered by HAProxy itself: the process is up (not whether a backend is)
# one line per request: when it ended (epoch ms), the time it was active, which replica answered, the retries
# ("+N": N retries, the last on another replica), the status, the termination state, method and path
LOG_FORMAT = "%[date(0,ms)] %Ta %b %s %rc %ST %tsc %HM %HU"

_SAFE_TO_REPLAY = (
    "METH_GET or { path /v1/recommend } !{ req.body -m sub session_id } !{ req.body -m sub \\\\u }"
)


def _backend(name: str, servers: dict[str, int], balance: str, check_ms: int) -> list[str]:
    lines = [
        f"backend {name}",
        f"    balance {balance}",
        # the whole body before choosing a server: the replay rule reads it (and l7 retries need it buffered)
        "    option http-buffer-request",
        "    retries 2",
        "    option redispatch 1  # every retry on another replica (default: only the last)",
        "    retry-on conn-failure empty-response",
        f"    http-request disable-l7-retry unless {_SAFE_TO_REPLAY}",
        "    http-response set-header X-Served-By %[srv_name]",
        # /readyz turns 503 as soon as a replica starts draining (python -m service, SIGTERM): two failed
        # checks take it out of rotation within ~1 s, before its listener closes (SEQREC_SHUTDOWN_DRAIN_S)
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
        f"    default-server check inter {check_ms}ms fall 2 rise 1",
        # a crashed replica refuses connections at once, and leastconn favours the server with the fewest
        # connections (the dead one): without this every request until the next failed check goes there first
        # and is replayed; 10 connection errors in a row take it out within milliseconds
        "    default-server observe layer4 error-limit 10 on-error mark-down",
    ]
    return lines + [f"    server {srv} 127.0.0.1:{port}" for srv, port in servers.items()]


def config(servers: dict[str, int], port_all: int, port_one: int, balance: str = "leastconn", check_ms: int = 500,
           connect_ms: int = 250) -> str:  # fmt: skip
    """Two frontends: `all` balances over every replica, `one` sends everything to the first (the throughput
    runs compare them with the same HAProxy and the same checks)."""
    first = next(iter(servers))
    lines = [
        "global",
        "    log stdout format raw local0",
        # one thread: 2 cores are shared with the replicas, Redis and the load driver; one thread carries
        # thousands of requests/s, a second would only compete with the replicas
        "    nbthread 1",
        "    tune.bufsize 32768  # l7 retries replay only requests that fit one buffer; 200-item histories do",
        "defaults",
        "    mode http",
        "    log global",
        f'    log-format "{LOG_FORMAT}"',
        # also the pause before a retry whose connection failed asynchronously (min(timeout connect, 1 s)): with
        # 1 s, the few requests caught connecting to a replica as it died took 1.0 s; 250 ms is still ample
        # for a connect on loopback or a LAN
        f"    timeout connect {connect_ms}ms",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 10s",
    ]
    for name, port, backend in (("all", port_all, "api"), ("one", port_one, "api_one")):
        lines += [f"frontend {name}", f"    bind 127.0.0.1:{port}", f"    monitor-uri {MONITOR}",
                  "    stats enable", f"    stats uri {STATS}", f"    default_backend {backend}"]  # fmt: skip
    lines += _backend("api", servers, balance, check_ms)
    lines += _backend("api_one", {first: servers[first]}, balance, check_ms)
    return "\n".join(lines) + "\n"


@dataclass
class Balancer:
    url: str  # the `all` frontend
    url_one: str  # the `one` frontend
    log: Path
    pid: int


@contextmanager
def haproxy(servers: dict[str, int], work: Path, balance: str = "leastconn", check_ms: int = 500,
            connect_ms: int = 250) -> Iterator[Balancer]:  # fmt: skip
    """HAProxy in the foreground (`-db`) with config() written under `work`; yields once it answers."""
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed: scripts/ensure_system_deps.sh (apt-get install -y haproxy)")
    port_all, port_one = procs.free_port(), procs.free_port()
    cfg = work / "haproxy.cfg"
    cfg.write_text(config(servers, port_all, port_one, balance, check_ms, connect_ms))
    log = work / "haproxy.log"
    with procs.server(["haproxy", "-f", str(cfg), "-db"], {}, port_all, MONITOR, timeout_s=20, log=log) as running:
        yield Balancer(running.url, f"http://127.0.0.1:{port_one}", log, running.pid)


def server_status(text: str, backend: str, server: str) -> str:
    """A server's status (UP, DOWN, "UP 1/2", MAINT...) in the stats page's CSV."""
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return next((r["status"] for r in rows if r["pxname"] == backend and r["svname"] == server), "?")


async def wait_up(http: httpx.AsyncClient, lb: Balancer, server: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while server_status((await http.get(f"{lb.url}{STATS};csv")).text, "api", server) != "UP":
        if time.monotonic() > deadline:
            raise TimeoutError(f"HAProxy did not mark {server} up within {timeout_s} s")
        await asyncio.sleep(0.1)


@dataclass
class Logged:
    """One request as HAProxy logged it; `ok`: a 200 delivered in full."""

    start_s: float  # epoch seconds
    end_s: float
    backend: str
    server: str
    retries: int
    redispatched: bool
    status: int
    state: str  # termination state: "----" a clean end; "SD--": the server closed during the body...
    method: str
    path: str


    @property
    def ok(self) -> bool:
        return self.status == 200 and self.state.startswith("--")


def read_log(path: Path) -> list[Logged]:
    """The request lines of HAProxy's log (server state changes and warnings are left out)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 9 or not parts[0].isdigit():
            continue
        end_ms, active_ms, backend, server, rc, status, state, method, uri = parts
        end = int(end_ms) / 1000
        out.append(Logged(end - max(int(active_ms), 0) / 1000, end, backend, server, int(rc.lstrip("+")),
                          rc.startswith("+"), int(status), state, method, uri))  # fmt: skip
    return out
