"""The real-SmolLM2 fixture bundle (LoRA adapters + soft prompt), one per session for the vLLM and openai tests,
and one real vLLM OpenAI-compatible server for it, shared by the openai tests of every module. The server is
started by the project's launcher (`python -m service.llm.remote_server`), fp32, on a free port.

It takes 40-90 s to start on 2 cores, mostly imports on one core: when the collected tests include any marked
`remote_llm`, it is launched in the background as soon as collection ends and runs beside the tests before
them; the `remote_llm` fixture then waits for it to be ready. It is stopped when the session ends.
Skipped where vLLM is not installed, unless SEQREC_REQUIRE_VLLM=1 (CI sets it: there a missing vLLM fails)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from recbundle.base_model import DEFAULT_MODEL_DIR
from recbundle.rerank import RerankSpec
from scripts.procs import free_port
from tests.service.llm.fixtures import build_real_llm_bundle

REPO = Path(__file__).resolve().parents[3]
# lambda 5: the LLM's log-probabilities move items across the teacher's gaps in the fixture bundle
SPEC = RerankSpec(blend_lambda=5.0)
START_TIMEOUT_S = 300.0


class RemoteLLMServer:
    """A vLLM OpenAI server process for `bundle` (its own process group: the engine runs in a child)."""

    def __init__(self, bundle: Path, work: Path) -> None:
        self.bundle = bundle
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = work / "vllm-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "service.llm.remote_server", "--bundle", str(self.bundle),
            "--model", str(DEFAULT_MODEL_DIR), "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu",
            "--dtype", "float32", "--max-model-len", "2048", "--zero-dir", str(self.work / "zero"),
        ]  # fmt: skip

    def launch(self) -> RemoteLLMServer:
        # GiB of KV cache; unbuffered, so that the log tail in an error message is the server's last words
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.launched = time.monotonic()
        return self

    def wait_ready(self) -> RemoteLLMServer:
        assert self.proc is not None
        deadline = self.launched + START_TIMEOUT_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"exited with code {self.proc.returncode}")
            try:  # trust_env=False: a proxy from the environment must not take loopback requests
                response = httpx.get(f"{self.url}/models", timeout=5, trust_env=False)
                if response.status_code == 200:
                    return self
                last = f"GET /v1/models answered {response.status_code}"
            except httpx.HTTPError as e:
                last = f"GET /v1/models: {type(e).__name__}: {e}"
            time.sleep(1)
        self._fail(f"was not ready {START_TIMEOUT_S:.0f} s after its launch ({last})")
        raise AssertionError  # unreachable: _fail raises

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def metric(self, name: str) -> float:
        """A gauge or counter from the server's own /metrics (summed over its label sets)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5, trust_env=False).text
        lines = [ln for ln in text.splitlines() if ln.startswith(name) and not ln.startswith("#")]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

    def _fail(self, why: str) -> None:
        self.stop()
        pytest.fail(f"the vLLM server ({' '.join(self.command())}) {why}; its log ends:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM to the process group (the server shuts its engine down), SIGKILL to what is left."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue


_session: dict[str, object] = {}  # "dir": the session's work folder, "server": the launched server


def _have_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None or os.environ.get("SEQREC_REQUIRE_VLLM") == "1"


def _work_dir() -> Path:
    if "dir" not in _session:
        _session["dir"] = Path(tempfile.mkdtemp(prefix="seqrec-real-llm-"))
    return Path(str(_session["dir"]))


def _bundle() -> Path:
    return build_real_llm_bundle(_work_dir(), SPEC)  # built once: it is reused when it exists


def pytest_collection_finish(session: pytest.Session) -> None:
    if _have_vllm() and any(item.get_closest_marker("remote_llm") for item in session.items):
        _session["server"] = RemoteLLMServer(_bundle(), _work_dir()).launch()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    server = _session.pop("server", None)
    if isinstance(server, RemoteLLMServer):
        server.stop()
    folder = _session.pop("dir", None)
    if folder is not None:
        shutil.rmtree(str(folder), ignore_errors=True)


@pytest.fixture(scope="session")
def real_llm_bundle() -> Path:
    """The real-SmolLM2 bundle; its adapters and soft prompt also lie beside it (fixtures.build_real_llm_bundle)."""
    return _bundle()


@pytest.fixture(scope="session")
def remote_llm(real_llm_bundle: Path) -> RemoteLLMServer:
    if os.environ.get("SEQREC_REQUIRE_VLLM") != "1":
        pytest.importorskip("vllm", reason="vLLM is not installed (scripts/install_vllm.sh cpu)")
    server = _session.get("server")
    if not isinstance(server, RemoteLLMServer):  # not launched at collection (e.g. no test marked remote_llm)
        server = _session["server"] = RemoteLLMServer(real_llm_bundle, _work_dir()).launch()
    return server.wait_ready()
