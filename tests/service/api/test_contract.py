"""The API contract, checked by schemathesis (`--checks all`) against a real server: every route, every status
it answers documented, every error in the one shape, schema-valid requests accepted (see schemathesis.toml for
the one semantic exception, unknown item ids), schema-violating ones refused, OpenAPI links followed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 25  # per operation and phase: ~600 requests, ~10 s here


def test_schemathesis_all_checks_pass(live_server: str, tmp_path: Path) -> None:
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    cmd = [st, "--no-color", "--config-file", str(CONFIG), "run", f"{live_server}/openapi.json", "--checks", "all",
           "--max-examples", str(MAX_EXAMPLES), "--seed", "7", "--generation-database", "none"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    n_operations = sum(len(ops) for ops in httpx.get(f"{live_server}/openapi.json").json()["paths"].values())
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert tested and int(tested.group(1)) == n_operations, done.stdout[-3000:]  # no route left out
    assert "No issues found" in done.stdout
