"""Shared by scripts/bundle_swap_load.py and scripts/sigterm_load.py: fixture bundles, a `python -m service`
subprocess, closed-loop HTTP clients with varied histories, latency summaries and the report files."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts import procs  # noqa: E402


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.node()}: {os.cpu_count()} CPU cores shared with other engineers' jobs "
        f"(load average {load[0]:.1f} at the start), Python {platform.python_version()}"
    )


def fixture_bundles(out: Path, n_items: int = 2000) -> tuple[Path, Path]:
    """Two fixture bundles (tests/service/bundle_factory.py: other embeddings, other bundle ids), built once."""
    sys.path.insert(0, str(REPO))
    from tests.service.bundle_factory import build_bundle

    paths = (out / "bundle-a", out / "bundle-b")
    for seed, path in enumerate(paths):
        if not (path / "manifest.json").is_file():
            build_bundle(path, dim=32, max_len=50, n_items=n_items, seed=seed)
    return paths


def tampered_copy(bundle: Path, out: Path) -> Path:
    """`bundle` with one byte of items.jsonl changed: its sha256 check fails."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle, out)
    data = bytearray((out / "items.jsonl").read_bytes())
    data[20] = (data[20] + 1) % 256
    (out / "items.jsonl").write_bytes(bytes(data))
    return out


def catalogue_ids(bundle: Path) -> list[str]:
    return [json.loads(line)["raw_id"] for line in (bundle / "items.jsonl").read_text().splitlines()]


def histories(ids: list[str], n: int, seed: int = 0) -> list[list[str]]:
    """Varied, real-looking histories: 2-40 items, mostly from one or two neighbourhoods of the catalogue
    (the fixture's items cluster by genre in blocks of 10), a few random ones, some repeats."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        homes = [rng.randrange(0, len(ids) // 10) for _ in range(rng.choice((1, 1, 2)))]
        length = min(int(rng.expovariate(1 / 10)) + 2, 40)
        hist = []
        for _ in range(length):
            if rng.random() < 0.15:
                hist.append(rng.choice(ids))
            else:
                block = rng.choice(homes)
                hist.append(ids[min(block * 10 + rng.randrange(10), len(ids) - 1)])
        out.append(hist)
    return out


@contextmanager
def service(env: dict[str, str], log: Path, timeout_s: float = 120) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m service` with SEQREC_* `env` on a free port; yields (process, base url) once /readyz is 200."""
    with procs.service(env, main=True, timeout_s=timeout_s, log=log) as running:
        yield running.proc, running.url


Run = Callable[[subprocess.Popen[bytes], str], Awaitable[dict[str, Any]]]


def measure_and_report(args: Any, env: dict[str, str], run: Run, summarise: Callable[[dict[str, Any], Any], dict[str, Any]],
                       table: Callable[[dict[str, Any]], list[str]]) -> None:  # fmt: skip
    """The measurement scripts' common tail: `python -m service` with `env` (its log in --work), `run` against
    it, then the summary written as docs/results/<--name>.md/.json and printed."""
    where = machine()
    with service(env, args.work / f"{args.name}-server.log") as (proc, url):
        result = asyncio.run(run(proc, url))
    summary = summarise(result, args)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    path = write_report(args.name, command, summary, table(summary), where)
    print(path.read_text())


@dataclass
class Call:
    start: float  # time.monotonic()
    end: float
    outcome: str  # "200", another status, or the exception's class name
    bundle_id: str | None = None


async def client_loop(
    http: httpx.AsyncClient, url: str, bodies: list[list[str]], stop: asyncio.Event, calls: list[Call], seed: int
) -> None:
    """One closed-loop client: a request, then the next, until `stop`."""
    rng = random.Random(seed)
    while not stop.is_set():
        body = {"history": rng.choice(bodies), "k": 10}
        start = time.monotonic()
        try:
            r = await http.post(f"{url}/v1/recommend", json=body)
            bundle = r.json().get("bundle_id") if r.status_code == 200 else None
            calls.append(Call(start, time.monotonic(), str(r.status_code), bundle))
        except httpx.HTTPError as e:
            calls.append(Call(start, time.monotonic(), type(e).__name__))
            await asyncio.sleep(0.05)  # a refused connection answers at once: do not spin


def percentiles(values_s: list[float]) -> dict[str, float | int]:
    if not values_s:
        return {"n": 0}
    v = sorted(values_s)

    def q(p: float) -> float:
        return round(1000 * v[min(len(v) - 1, int(p * len(v)))], 2)

    return {"n": len(v), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(1000 * v[-1], 2)}


def write_report(name: str, command: str, summary: dict[str, Any], lines: list[str], where: str) -> Path:
    """docs/results/<name>.md and .json; `where`: machine() taken when the run started."""
    out = REPO / "docs" / "results"
    out.mkdir(parents=True, exist_ok=True)
    report = {"command": command, "machine": where, **summary}
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = [f"# {name}", "", f"Command: `{command}`", "", f"Machine: {report['machine']}", "", *lines, ""]
    (out / f"{name}.md").write_text("\n".join(text))
    return out / f"{name}.md"
