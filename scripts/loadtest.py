"""Load tests of POST /v1/recommend with wrk (C, so the driver is not the bottleneck on 2 cores).

    # request bodies from the histories of real test users (the prepared dataset the bundle came from)
    python scripts/loadtest.py bodies --preset ml-100k --bundle bundles/current --out runs/bench/bodies.jsonl --k 10
    # one load run against a running server
    python scripts/loadtest.py run --url http://127.0.0.1:8000 --bodies runs/bench/bodies.jsonl -c 32 -d 20
    # the README benchmark: bare FastAPI vs the service (no explanations), then explanations at k=5
    python scripts/loadtest.py bench --bundle bundles/current --preset ml-100k --out runs/bench/service.json
    # bare vs service vs service with an API key and a (never reached) Redis rate limit: the cost of the checks
    python scripts/loadtest.py bench --bundle bundles/current --bodies runs/bench/bodies.jsonl --skip-explain \
        --auth --rounds 3 -d 8 --out docs/results/auth-throughput.json

Prints throughput, p50/p95/p99 latency and error rate per run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
LUA = REPO / "scripts" / "loadtest" / "recommend.lua"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.procs import Redis, free_port, server, uvicorn_cmd  # noqa: E402

T = TypeVar("T")


def catalogue_ids(bundle: Path) -> list[str]:
    """The catalogue's item id of each dense id (index 0: padding), from the bundle's items.jsonl: the API
    speaks catalogue ids, the prepared split dense ones."""
    sys.path.insert(0, str(REPO))
    from service.index.catalogue import Catalogue

    return Catalogue.from_jsonl(Path(bundle) / "items.jsonl").external_of


def write_bodies(preset: str, out: Path, k: int, explain: bool, max_history: int, bundle: Path) -> int:
    """One request body per test user of the preset: the user's history, as the catalogue's ids."""
    sys.path.insert(0, str(REPO))
    from training import pipeline
    from training.config import load_config

    _, split = pipeline.prepare_stage(load_config(preset))
    external = catalogue_ids(bundle)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for history in split.test_history:
            body = {"history": [external[int(i)] for i in history[-max_history:]], "k": k, "explain": explain}
            f.write(json.dumps(body, separators=(",", ":")) + "\n")
    return len(split.test_history)


def run_wrk(
    url: str, bodies: Path, concurrency: int, duration: int, threads: int = 1, timeout: int = 30, api_key: str = ""
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", f"--timeout={timeout}s", "-s", str(LUA),
           url, "--", str(bodies.resolve()), api_key]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines()[::-1] if x.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    result["concurrency"] = concurrency
    result["error_rate"] = result["errors"] / max(result["requests"], 1)
    return result


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server (no persistence, loopback only); yields its URL."""
    with tempfile.TemporaryDirectory(prefix="loadtest-redis-") as d:
        redis = Redis(Path(d), persist=False).start()
        try:
            yield redis.url
        finally:
            redis.stop()


def auth_env(redis_url: str) -> tuple[str, dict[str, str]]:
    """A fresh API key and the service settings that require it, with a Redis rate limit never reached."""
    sys.path.insert(0, str(REPO))
    from service.auth.keys import entry_json, new_key

    raw, entry = new_key("loadtest", ["recommend"])
    env = {"SEQREC_API_KEYS": f"[{entry_json(entry)}]", "SEQREC_REDIS_URL": redis_url,
           "SEQREC_RATE_LIMIT_PER_S": "1000000", "SEQREC_RATE_LIMIT_BURST": "1000000"}
    return raw, env


def machine() -> str:
    """The host a benchmark ran on, as its reports name it: CPU model, cores and the vector instructions torch
    uses. Ratios between servers moved with the host (docs/service.md, "The last block without keys or
    values, and another host"), so reports say which."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    try:
        import torch

        isa = f", torch {torch.__version__} with {torch.backends.cpu.get_cpu_capability()}"
    except ImportError:  # the load test itself needs no torch
        isa = ""
    return f"{platform.machine()} {model}, {os.cpu_count()} CPUs, Python {platform.python_version()}{isa}"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def rotations(items: list[T], rounds: int) -> list[list[T]]:
    """The order of each round: round r starts at item r (mod len), so that over len(items) rounds every
    item runs once in every place. A fixed order ran the service with auth last in every round, so a machine
    that drifts within a round weighed on it more than on bare FastAPI, which always ran first."""
    return [items[r % len(items) :] + items[: r % len(items)] for r in range(rounds)]


def auth_bench(args: argparse.Namespace, bodies: Path, n: int) -> dict[str, Any]:
    """Bare FastAPI, the service, and the service requiring an API key with a Redis rate limit (never
    reached: the cost of the checks), all three running side by side and driven in turn for --rounds
    rounds, so that other jobs on the machine weigh on all three alike; each round starts at the next
    server (`rotations`). Reports the median round and the median of the per-round ratios."""
    py, opts = sys.executable, ["--log-level", "warning", "--no-access-log", *args.uvicorn_opt]
    ports = [free_port() for _ in range(3)]
    bare = [py, "-m", "uvicorn", "--app-dir", "scripts", "bare_app:app", "--port", str(ports[0]), *opts]
    svc = [uvicorn_cmd(p, *args.uvicorn_opt) for p in ports[1:]]
    env = {"SEQREC_BUNDLE_DIR": str(Path(args.bundle).resolve()), "SEQREC_LOG_LEVEL": "warning",
           "SEQREC_LLM_BACKEND": "none"}
    names = ["bare_fastapi", "service_no_explain", "service_auth_ratelimit"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with redis_server() as redis_url:
        key, auth = auth_env(redis_url)
        with server(bare, {}, ports[0], "/docs") as bare_srv, server(svc[0], env, ports[1]) as svc_srv, \
                server(svc[1], {**env, **auth}, ports[2]) as auth_srv:
            urls = [bare_srv.url, svc_srv.url, auth_srv.url]
            targets = list(zip(names, urls, ["", "", key], strict=True))
            for _, url, api_key in targets:
                run_wrk(url, bodies, args.concurrency, 3, api_key=api_key)  # warm-up
            orders = rotations(targets, args.rounds)
            for order in orders:
                for name, url, api_key in order:
                    runs[name].append(run_wrk(url, bodies, args.concurrency, args.duration, api_key=api_key))
    report: dict[str, Any] = {"bodies": n, "concurrency": args.concurrency, "duration_s": args.duration,
                              "rounds": args.rounds, "runs": runs, "load_average": os.getloadavg(),
                              "order_per_round": [[name for name, _, _ in order] for order in orders],
                              "machine": machine()}
    for name in names:
        report[name] = sorted(runs[name], key=lambda x: x["rps"])[args.rounds // 2]
    report["throughput_ratio"] = report["service_no_explain"]["rps"] / report["bare_fastapi"]["rps"]
    report["auth_throughput_ratio"] = report["service_auth_ratelimit"]["rps"] / report["bare_fastapi"]["rps"]
    report["auth_ratio_per_round"] = [a["rps"] / b["rps"] for a, b in zip(runs[names[2]], runs[names[0]], strict=True)]
    # the ratio of the median rounds above can differ from the median of each round's own ratio (rounds pair
    # the servers in time, so the second is less exposed to the machine's drift): both are reported
    report["auth_ratio_paired_median"] = statistics.median(report["auth_ratio_per_round"])
    report["command"] = "python scripts/loadtest.py " + " ".join(sys.argv[1:])
    return report


def bench(args: argparse.Namespace) -> dict[str, Any]:
    py = sys.executable
    out_dir = Path(args.out).parent
    plain, explained = out_dir / "bodies_k10.jsonl", out_dir / "bodies_k5_explain.jsonl"
    if args.bodies:  # written beforehand (no prepared dataset needed); the explanation runs need --preset's
        if not (args.skip_explain or args.auth):
            raise SystemExit("--bodies serves the runs without explanations only: add --skip-explain")
        plain = Path(args.bodies)
        n = sum(1 for line in plain.open() if line.strip())
    else:
        n = write_bodies(args.preset, plain, 10, False, args.max_history, args.bundle)
        write_bodies(args.preset, explained, 5, True, args.max_history, args.bundle)
    if args.auth:
        return auth_bench(args, plain, n)
    report: dict[str, Any] = {"bodies": n, "concurrency": args.concurrency, "duration_s": args.duration}
    uvicorn_opts = ["--log-level", "warning", "--no-access-log", *args.uvicorn_opt]
    port = free_port()
    bare = [py, "-m", "uvicorn", "--app-dir", "scripts", "bare_app:app", "--port", str(port), *uvicorn_opts]
    with server(bare, {}, port, "/docs") as srv:
        url = srv.url
        run_wrk(url, plain, args.concurrency, 3)  # warm-up
        report["bare_fastapi"] = run_wrk(url, plain, args.concurrency, args.duration)
    env = {"SEQREC_BUNDLE_DIR": str(Path(args.bundle).resolve()), "SEQREC_LOG_LEVEL": "warning"}
    port = free_port()
    with server(uvicorn_cmd(port, *args.uvicorn_opt), {**env, "SEQREC_LLM_BACKEND": "none"}, port) as srv:
        url = srv.url
        run_wrk(url, plain, args.concurrency, 3)
        report["service_no_explain"] = run_wrk(url, plain, args.concurrency, args.duration)
    report["throughput_ratio"] = report["service_no_explain"]["rps"] / report["bare_fastapi"]["rps"]
    report["command"] = "python scripts/loadtest.py " + " ".join(sys.argv[1:])
    _save(report, Path(args.out))  # kept even if the slower explanation run below fails
    if not args.skip_explain:
        port = free_port()
        llm_env = {**env, "SEQREC_LLM_BACKEND": args.llm_backend, "SEQREC_EXPLAIN_DEADLINE_MS": str(args.deadline_ms)}
        report["explain_backend"] = args.llm_backend
        with server(uvicorn_cmd(port, *args.uvicorn_opt), llm_env, port) as srv:
            url = srv.url
            for c in args.explain_concurrency:
                run_wrk(url, explained, 1, 5, timeout=60)  # warm-up
                report[f"service_explain_k5_c{c}"] = run_wrk(url, explained, c, args.explain_duration, timeout=60)
    return report


def _save(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    if "service_auth_ratelimit" in report:
        out.with_suffix(".md").write_text(_auth_markdown(report))


def _auth_markdown(r: dict[str, Any]) -> str:
    rows = [("bare FastAPI (scripts/bare_app.py)", r["bare_fastapi"]), ("service", r["service_no_explain"]),
            ("service + API key + Redis rate limit", r["service_auth_ratelimit"])]
    table = "\n".join(f"| {name} | {x['rps']:,.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['errors']} |"
                      for name, x in rows)
    return (f"# POST /v1/recommend with API keys and rate limiting on\n\nCommand: `{r['command']}`\n\n"
            f"wrk, {r['concurrency']} connections, {r['duration_s']} s per run, {r['bodies']} request bodies; the "
            f"three servers run side by side and are driven in turn, {r['rounds']} rounds"
            f"{', each round starting at the next server' if 'order_per_round' in r else ''}; median round below. "
            f"{'Machine: ' + r['machine'] + '. ' if 'machine' in r else ''}"
            "The driver and the servers share the machine's cores (load average at the end: "
            f"{', '.join(f'{x:.1f}' for x in r['load_average'])}). The rate limit (Redis token bucket) is set "
            "high enough never to refuse: the runs measure the cost of the checks.\n\n"
            "| server | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n" + table + "\n\n"
            f"Ratio to bare FastAPI: service {r['throughput_ratio']:.2f}, service with auth "
            f"{r['auth_throughput_ratio']:.2f} (target >= 0.5); auth vs no auth "
            f"{r['service_auth_ratelimit']['rps'] / r['service_no_explain']['rps']:.2f}. Auth ratio to bare per "
            f"round: {', '.join(f'{x:.2f}' for x in r['auth_ratio_per_round'])} (median of these: "
            f"{r['auth_ratio_paired_median']:.2f}).\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bodies")
    b.add_argument("--preset", default="ml-100k")
    b.add_argument("--out", default="runs/bench/bodies.jsonl")
    b.add_argument("--k", type=int, default=10)
    b.add_argument("--explain", action="store_true")
    b.add_argument("--max-history", type=int, default=200)
    b.add_argument("--bundle", default="bundles/current", help="the bundle whose catalogue ids the bodies use")
    r = sub.add_parser("run")
    r.add_argument("--url", default="http://127.0.0.1:8000")
    r.add_argument("--bodies", default="runs/bench/bodies.jsonl")
    r.add_argument("-c", "--concurrency", type=int, default=32)
    r.add_argument("-d", "--duration", type=int, default=20)
    r.add_argument("-t", "--threads", type=int, default=1)
    r.add_argument("--api-key", default="", help="sent as Authorization: Bearer <key>")
    be = sub.add_parser("bench")
    be.add_argument("--bundle", default="bundles/current")
    be.add_argument("--preset", default="ml-100k")
    be.add_argument("--out", default="runs/bench/service.json")
    be.add_argument("-c", "--concurrency", type=int, default=32)
    be.add_argument("-d", "--duration", type=int, default=20)
    be.add_argument("--explain-concurrency", type=int, nargs="+", default=[1, 4])
    be.add_argument("--llm-backend", default="auto", help="LLM backend of the explanation runs")
    be.add_argument("--explain-duration", type=int, default=60)
    be.add_argument("--deadline-ms", type=int, default=30000)
    be.add_argument("--max-history", type=int, default=200)
    be.add_argument("--skip-explain", action="store_true")
    be.add_argument("--bodies", help="request bodies (JSON lines) to use instead of writing them from --preset")
    be.add_argument("--auth", action="store_true",
                    help="instead: bare FastAPI vs the service vs the service with an API key and a Redis rate limit")
    be.add_argument("--rounds", type=int, default=3, help="--auth: rounds of the three runs")
    be.add_argument("--uvicorn-opt", action="append", default=[], help="extra uvicorn option, for both servers")
    args = parser.parse_args()
    if args.cmd == "bodies":
        n = write_bodies(args.preset, Path(args.out), args.k, args.explain, args.max_history, Path(args.bundle))
        print(f"{n} bodies -> {args.out}")
    elif args.cmd == "run":
        print(json.dumps(run_wrk(args.url, Path(args.bodies), args.concurrency, args.duration, args.threads,
                                api_key=args.api_key)))
    else:
        report = bench(args)
        _save(report, Path(args.out))
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
