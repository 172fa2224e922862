"""The API contract with keys required (schemathesis `--checks all`, as tests/service/api/test_contract.py does
for the open API): with a valid key every route behaves as documented, and the declared security holds, i.e.
requests without a key or with an invalid one are refused on every protected operation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.auth.keys import entry_json, new_key
from tests.service.api.test_contract import CONFIG, MAX_EXAMPLES
from tests.service.conftest import serve_subprocess


@pytest.fixture(scope="module")
def keyed_server(bundle_dir: Path) -> Iterator[tuple[str, str]]:
    raw, entry = new_key("contract", ["recommend", "sessions", "admin"])
    env = {"SEQREC_API_KEYS": f"[{entry_json(entry)}]", "SEQREC_RATE_LIMIT_PER_S": "0"}
    with serve_subprocess(bundle_dir, env) as url:
        yield url, raw


def test_schemathesis_all_checks_pass_with_keys_required(
    keyed_server: tuple[str, str], tmp_path: Path
) -> None:
    url, key = keyed_server
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    cmd = [st, "--no-color", "--config-file", str(CONFIG), "run", f"{url}/openapi.json", "--checks", "all",
           "--header", f"Authorization: Bearer {key}",
           "--max-examples", str(MAX_EXAMPLES), "--seed", "7", "--generation-database", "none"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout
    schema = httpx.get(f"{url}/openapi.json").json()
    assert schema["paths"]["/v1/recommend"]["post"][
        "security"
    ]  # the auth checks above had something to check
