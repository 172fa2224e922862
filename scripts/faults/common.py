"""What the faults share: a throw-away redis-server, the service as a real process, a fixture bundle with
realistic histories, an async HTTP load loop, /proc sampling, and the result every fault returns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts import procs  # noqa: E402
from scripts.procs import Redis, free_port  # noqa: E402,F401  (the faults' shared toolkit)
from scripts.procs import Running as Service  # noqa: E402

logger = logging.getLogger("faults")


@dataclass
class Criterion:
    name: str  # the stated criterion, e.g. "no 5xx other than 503 session_store_unavailable"
    passed: bool
    detail: str  # what was measured


@dataclass
class FaultResult:
    fault: str
    command: str
    criteria: list[Criterion] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the fault could not run here (then it neither passes nor fails)
    notes: list[str] = field(default_factory=list)

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.criteria.append(Criterion(name, bool(passed), detail))
        logger.info("%s: %s — %s", "PASS" if passed else "FAIL", name, detail)

    @property
    def passed(self) -> bool:
        return self.skipped is None and bool(self.criteria) and all(c.passed for c in self.criteria)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def latency_summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2) if ms else float("nan")}  # fmt: skip


# --- Redis ----------------------------------------------------------------------------------------------


# --- the service ----------------------------------------------------------------------------------------


def service(bundle: Path, env: dict[str, str], timeout_s: float = 180,
            extra_args: tuple[str, ...] = ()) -> contextlib.AbstractContextManager[Service]:  # fmt: skip
    """The service under uvicorn on a free port serving `bundle`, its log in a file; entered once /readyz
    answers 200."""
    return procs.service(env, bundle, extra_args=extra_args, timeout_s=timeout_s,
                         log=Path(tempfile.mkstemp(prefix="fault-service-", suffix=".log")[1]))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tcp_ports(pid: int) -> dict[str, tuple[int, int]]:
    """socket inode -> (local port, remote port) for the process's network namespace (/proc/<pid>/net/tcp*)."""
    out: dict[str, tuple[int, int]] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
            for line in list(f)[1:]:
                cols = line.split()
                out[cols[9]] = (int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16))
    return out


def fd_kinds(pid: int, redis_port: int) -> dict[str, int]:
    """The process's open fds by kind: connections to Redis (its pool grows with concurrent demand and keeps
    idle connections), other TCP sockets, and everything else (files, pipes, epoll, ...)."""
    ports = _tcp_ports(pid)
    kinds = {"redis": 0, "tcp_other": 0, "other": 0}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        inode = target[len("socket:["):-1] if target.startswith("socket:[") else None
        if inode is not None and inode in ports:
            kinds["redis" if ports[inode][1] == redis_port else "tcp_other"] += 1
        else:
            kinds["other"] += 1
    return kinds


# --- bundles and request bodies -------------------------------------------------------------------------


def fixture_bundle(root: Path, n_items: int = 50, **kwargs: Any) -> Path:
    """`tests.service.bundle_factory.build_bundle` (a real exported encoder and FAISS index)."""
    from tests.service.bundle_factory import build_bundle

    if not (root / "manifest.json").exists():
        build_bundle(root, n_items=n_items, **kwargs)
    return root


def catalogue_ids(bundle: Path) -> list[str]:
    """Catalogue ids of the items the model ranks (dense ids 1..n)."""
    from scripts.loadtest import catalogue_ids as external

    return [e for e in external(bundle)[1:] if e]


class Histories:
    """Varied, realistic-looking histories: lengths drawn long-tailed (many short, some up to `max_len`),
    items mostly from one or two genre clusters of 10 (as the fixture catalogue is laid out) with some
    noise, in a random order."""

    def __init__(self, ids: list[str], seed: int = 0, max_len: int = 50) -> None:
        self.ids = ids
        self.rng = random.Random(seed)
        self.max_len = max_len

    def one(self, n: int | None = None) -> list[str]:
        rng = self.rng
        n = n or min(self.max_len, max(1, int(rng.paretovariate(1.2) * 2)))
        clusters = [rng.randrange(max(1, len(self.ids) // 10)) for _ in range(2)]
        out = []
        for _ in range(n):
            if rng.random() < 0.8:
                c = rng.choice(clusters)
                out.append(self.ids[min(len(self.ids) - 1, c * 10 + rng.randrange(10))])
            else:
                out.append(rng.choice(self.ids))
        return out


def write_bodies(path: Path, histories: Histories, n: int, k: int = 10, sessions: int = 0) -> Path:
    """`n` POST /v1/recommend bodies, one JSON per line (scripts/loadtest/recommend.lua's format); with
    `sessions` > 0, every other body also names one of that many session ids (its events are appended)."""
    with path.open("w") as f:
        for i in range(n):
            body: dict[str, Any] = {"history": histories.one(), "k": k}
            if sessions and i % 2:
                body["session_id"] = f"soak-{histories.rng.randrange(sessions)}"
            f.write(json.dumps(body, separators=(",", ":")) + "\n")
    return path


# --- async load -----------------------------------------------------------------------------------------


@dataclass
class Sample:
    t0: float  # seconds since the load started, when the request was sent
    t: float  # the same, at the response
    kind: str
    status: int  # 0: no HTTP answer (connection error, timeout)
    ms: float
    body: dict[str, Any] | None


async def timed(client: httpx.AsyncClient, kind: str, t0: float, method: str, path: str,
                json_body: Any = None) -> Sample:  # fmt: skip
    start = time.perf_counter()
    try:
        r = await client.request(method, path, json=json_body)
        status = r.status_code
        try:
            body = r.json() if r.content else None
        except ValueError:
            body = {"raw": r.text[:200]}
    except httpx.HTTPError as e:
        status, body = 0, {"transport_error": type(e).__name__}
    end = time.perf_counter()
    return Sample(start - t0, end - t0, kind, status, (end - start) * 1000, body)


def error_code(sample: Sample) -> str | None:
    body = sample.body or {}
    err = body.get("error") if isinstance(body, dict) else None
    return err.get("code") if isinstance(err, dict) else None


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)
