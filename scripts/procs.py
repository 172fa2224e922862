"""Real processes for benchmarks, fault campaigns and tests: a free port, a server started with its log in a
file and awaited until an HTTP probe answers 200, the service itself (`uvicorn --factory
service.main:create_app` or `python -m service`), and a redis-server.

Logs go to files: a pipe nobody reads fills up and blocks the server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def _wait_ready(proc: subprocess.Popen[bytes], probe: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{probe} did not answer 200 within {timeout_s} s: {log.read_text()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def server(cmd: Sequence[str], env: dict[str, str], port: int, ready_path: str = "/readyz",
           timeout_s: float = 300, log: Path | None = None, stop_timeout_s: float = 30) -> Iterator[Running]:  # fmt: skip
    """`cmd` (listening on `port`) with `env` over this process's environment, run from the repository root;
    yields once GET `ready_path` answers 200. Stopped with SIGTERM (SIGKILL after `stop_timeout_s`), unless
    the caller already ended it."""
    log = log or Path(tempfile.mkstemp(prefix="seqrec-server-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(list(cmd), env={**os.environ, **env}, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url + ready_path, log, timeout_s)
        yield Running(url, proc, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def enter_all(stack: ExitStack, managers: Sequence[AbstractContextManager[T]]) -> list[T]:
    """Enter `managers` side by side (servers that each take seconds to become ready start together), each
    registered on `stack`; if one fails, the others are still closed with the stack."""
    with ThreadPoolExecutor(max(1, len(managers))) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager)
    return [f.result() for f in futures]  # raises the first failure


def uvicorn_cmd(port: int, *extra: str, app: str = "service.main:create_app") -> list[str]:
    """The service under uvicorn on `port` (`app` a factory), quiet: warnings only, no access log."""
    return [sys.executable, "-m", "uvicorn", "--factory", app, "--port", str(port),
            "--log-level", "warning", "--no-access-log", *extra]  # fmt: skip


@contextmanager
def service(env: dict[str, str], bundle: Path | None = None, *, main: bool = False, extra_args: Sequence[str] = (),
            timeout_s: float = 180, log: Path | None = None, omp_threads: int | None = 1,
            port: int | None = None) -> Iterator[Running]:  # fmt: skip
    """The service on `port` (default: a free one), without an LLM unless `env` names a backend, with
    `omp_threads` intra-op threads (None: torch's default); yields once /readyz answers 200. `main`: `python -m
    service` (the production entry point: SIGTERM drain, bundle watch) instead of plain uvicorn. A fixed `port`
    lets a replica behind a load balancer be restarted where the balancer expects it."""
    port = port or free_port()
    full = {"SEQREC_LLM_BACKEND": "none", "SEQREC_LOG_LEVEL": "warning",
            **({"OMP_NUM_THREADS": str(omp_threads)} if omp_threads else {}),
            **({"SEQREC_BUNDLE_DIR": str(bundle)} if bundle is not None else {}), **env}  # fmt: skip
    if main:
        cmd = [sys.executable, "-m", "service", *extra_args]
        full["SEQREC_PORT"] = str(port)
    else:
        cmd = uvicorn_cmd(port, *extra_args)
    with server(cmd, full, port, "/readyz", timeout_s, log) as running:
        yield running


class Redis:
    """A redis-server in the foreground (so it can be SIGKILLed), loopback only, on its own port and directory."""

    def __init__(self, workdir: Path, appendfsync: str = "always", port: int | None = None, persist: bool = True) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed: apt-get install -y redis-server")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.persist = persist  # append-only file (fsync per `appendfsync`); off: nothing on disk
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10) -> Redis:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
               "--save", "", *(["--appendonly", "yes", "--appendfsync", self.appendfsync] if self.persist else
                                  ["--appendonly", "no"])]  # fmt: skip
        log = (self.dir / "redis.log").open("a")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while self.cli("ping") != "PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {(self.dir / 'redis.log').read_text()[-1000:]}")
            time.sleep(0.05)
        return self

    def cli(self, *args: str) -> str:
        done = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return done.stdout.strip()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF rewrite (what a crash or the OOM killer does)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.cli("shutdown", "nosave")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
