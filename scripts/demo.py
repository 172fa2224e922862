"""The end of `make demo`: serve the freshly exported bundle and print one real answer with explanations.

    python scripts/demo.py --bundle bundles/current --preset ml-100k

Starts `python -m service` on a free port (SmolLM2 as the explainer, converted on first use; in-process
session store), waits for /readyz, sends the history of a real test user to POST /v1/recommend with
k=5 and explain=true, prints the answer, and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, body: dict | None = None, timeout: float = 300) -> dict:  # type: ignore[type-arg]
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return dict(json.loads(r.read()))


def test_user_history(preset: str, user: int, n: int) -> list[int]:
    from training import pipeline
    from training.config import load_config

    _, split = pipeline.prepare_stage(load_config(preset))
    return [int(i) for i in split.test_history[user][-n:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="bundles/current")
    parser.add_argument("--preset", default="ml-100k")
    parser.add_argument("--user", type=int, default=0, help="index of the test user whose history is sent")
    parser.add_argument("--history", type=int, default=20, help="most recent items of that history sent")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--llm-backend", default="auto", help="auto (vLLM when installed), vllm or transformers")
    args = parser.parse_args()
    history = test_user_history(args.preset, args.user, args.history)
    port = _free_port()
    env = {**os.environ, "SEQREC_BUNDLE_DIR": str(Path(args.bundle).resolve()), "SEQREC_PORT": str(port),
           "SEQREC_LLM_BACKEND": args.llm_backend, "SEQREC_EXPLAIN_DEADLINE_MS": "180000",
           "SEQREC_LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if _request(base + "/readyz", timeout=5).get("ready"):
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the service did not become ready; see its log above")
            time.sleep(1)
        answer = _request(base + "/v1/recommend", {"history": history, "k": args.k, "explain": True})
        titles = [_request(f"{base}/v1/items/{i}")["title"] for i in history[-5:]]
    finally:
        server.terminate()
        server.wait(30)
    print(f"\nPOST /v1/recommend  (test user {args.user}: {len(history)} most recent items, k={args.k}, explain=true)")
    print("recent history: " + "; ".join(titles))
    print(json.dumps(answer, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
