"""Fault: a tampered bundle (one byte flipped in a checksummed file).

    python -m scripts.faults.tampered_bundle

(a) For each of `index.faiss` and `item_embeddings.npy`: a copy of a good bundle with one byte flipped (the
middle byte, XOR 0x01). The service started on it must refuse to start: non-zero exit, and its output names
the file. (b) A service serving the good bundle under load is asked to swap to a tampered copy
(`POST /v1/admin/bundle {"path": ...}`, the lifecycle branch's admin endpoint): the swap must be refused
(409 or 422 in the error shape) while the old bundle keeps answering with 0 failures. Where the endpoint does
not exist (404), (b) is skipped and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from scripts.faults.common import (
    REPO,
    FaultResult,
    Histories,
    Sample,
    catalogue_ids,
    fixture_bundle,
    free_port,
    latency_summary,
    service,
    setup_logging,
    timed,
)

FILES = ("index.faiss", "item_embeddings.npy")


def tampered_copy(bundle: Path, out: Path, name: str) -> Path:
    shutil.copytree(bundle, out)
    path = out / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return out


def start_refused(bundle: Path, timeout_s: float = 120) -> tuple[int | None, str]:
    """(exit code or None if it kept running, its output) of the service started on `bundle`."""
    env = {**os.environ, "SEQREC_BUNDLE_DIR": str(bundle), "SEQREC_LLM_BACKEND": "none", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app", "--port", str(free_port()),
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return None, out


def refusal_line(output: str, name: str) -> str:
    lines = [x for x in output.splitlines() if name in x and ("Error" in x or "error" in x)]
    return lines[-1].strip()[:300] if lines else ""


async def swap_under_load(url: str, target: Path, hist: Histories, headers: dict[str, str], concurrency: int,
                          seconds: float) -> tuple[list[Sample], httpx.Response, str, str]:  # fmt: skip
    samples: list[Sample] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        before = (await client.post("/v1/recommend", json={"history": hist.one(), "k": 5})).json()["bundle_id"]
        t0 = time.perf_counter()
        until = t0 + seconds

        async def loop() -> None:
            while time.perf_counter() < until:
                samples.append(await timed(client, "recommend", t0, "POST", "/v1/recommend", {"history": hist.one(), "k": 10}))

        tasks = [asyncio.create_task(loop()) for _ in range(concurrency)]
        await asyncio.sleep(seconds / 3)
        swap = await client.post("/v1/admin/bundle", json={"path": str(target)}, headers=headers, timeout=120)
        await asyncio.gather(*tasks)
        after = (await client.post("/v1/recommend", json={"history": hist.one(), "k": 5})).json()["bundle_id"]
    return samples, swap, before, after


def campaign(workdir: Path, *, admin_headers: dict[str, str], concurrency: int = 4, seconds: float = 9,
             command: str = "") -> FaultResult:  # fmt: skip
    result = FaultResult("tampered_bundle", command)
    good = fixture_bundle(workdir / "good", n_items=500)
    for name in FILES:
        bad = tampered_copy(good, workdir / f"tampered-{name}", name)
        code, output = start_refused(bad)
        line = refusal_line(output, name)
        result.figures[f"start_on_tampered_{name}"] = {"exit_code": code, "message": line}
        result.check(f"(a) start on a bundle with one byte of {name} flipped: non-zero exit, message names the file",
                     code not in (None, 0) and bool(line), f"exit code {code}: {line or output[-300:]!r}")
    target = workdir / f"tampered-{FILES[0]}"
    with service(good, {"SEQREC_LLM_BACKEND": "none"}) as svc:
        probe = httpx.post(svc.url + "/v1/admin/bundle", json={"path": str(good)}, headers=admin_headers, timeout=120)
        if probe.status_code == 404 and (probe.json().get("error") or {}).get("code") == "not_found":
            result.notes.append("(b) skipped: POST /v1/admin/bundle is not available on this branch (404); the "
                                "bundle swap endpoint is on branch `lifecycle`, not merged here")
            result.figures["swap_under_load"] = "not available (404)"
            return result
        hist = Histories(catalogue_ids(good), seed=3)
        samples, swap, before, after = asyncio.run(swap_under_load(svc.url, target, hist, admin_headers, concurrency, seconds))
    failed = [s for s in samples if s.status != 200]
    body = swap.json() if swap.content else {}
    result.figures["swap_under_load"] = {"status": swap.status_code, "answer": body, "requests": latency_summary([s.ms for s in samples]),
                                         "failed": len(failed), "bundle_before": before, "bundle_after": after}  # fmt: skip
    result.check("(b) swap to the tampered copy under load refused with 409/422 in the error shape",
                 swap.status_code in (409, 422) and isinstance(body.get("error"), dict),
                 f"{swap.status_code} {str(body)[:300]}")
    result.check("(b) the old bundle keeps answering: 0 failed requests, same bundle_id after",
                 bool(samples) and not failed and before == after,
                 f"{len(samples)} requests, {len(failed)} failed, bundle {before} -> {after}")
    return result


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--admin-header", action="append", default=[], metavar="NAME:VALUE",
                   help="header for the admin endpoint (e.g. an API key with the admin scope)")


def run(args: argparse.Namespace, command: str) -> FaultResult:
    headers = dict(h.split(":", 1) for h in args.admin_header)
    with tempfile.TemporaryDirectory(prefix="fault-bundle-") as tmp:
        return campaign(Path(tmp), admin_headers={k.strip(): v.strip() for k, v in headers.items()}, command=command)


if __name__ == "__main__":
    setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_args(parser)
    r = run(parser.parse_args(), "python -m scripts.faults.tampered_bundle " + " ".join(sys.argv[1:]))
    print(r.as_dict())
    sys.exit(0 if r.passed else 1)
