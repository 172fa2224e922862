"""Catalogue scale: the index training/index.py chooses at 100k and 1M items, its recall@10 against exact
search, memory and search latency; then `/v1/recommend` over wrk for a 1M-item bundle and a small one in
the same run.

    OMP_NUM_THREADS=1 nice -n 15 python scripts/bench_catalogue.py --sizes 100000 1000000 \
        --out docs/results/catalogue-scale

Synthetic catalogues (dim 64, the ML-100K SASRec dim): items drawn around ~n/500 Gaussian cluster centres
whose sizes follow a power law, each item with a long-tail popularity that also lengthens its vector (SR
models give popular items larger norms). A user's history is 20-50 items from 1-3 clusters, drawn by
popularity; the user vector is the history's mean embedding, which is what the fixture bundle's mean-pool
encoder computes. Built indexes are cached under runs/catalogue/ (git-ignored) so reruns skip the build.
Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

log = logging.getLogger("bench_catalogue")
CACHE = REPO / "runs" / "catalogue"
DIM = 64
MAX_LEN = 50


def synthetic_items(n_items: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> embeddings (n + 1, dim) float32 with row 0 zeros, cluster of each item (n,), popularity (n,)."""
    rng = np.random.default_rng(seed)
    n_clusters = max(20, n_items // 500)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    mass = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    labels = rng.choice(n_clusters, size=n_items, p=mass / mass.sum())
    pop = 1.0 / rng.permutation(np.arange(1, n_items + 1)).astype(np.float64)  # Zipf(1) over items
    scale = (0.25 * (1.0 + 0.1 * np.log(pop / pop.min()))).astype(np.float32)
    emb = np.zeros((n_items + 1, dim), dtype=np.float32)
    for lo in range(0, n_items, 1 << 17):  # chunked: keeps the float64 temporaries small at 1M
        hi = min(n_items, lo + (1 << 17))
        noise = rng.normal(size=(hi - lo, dim)).astype(np.float32)
        emb[lo + 1 : hi + 1] = (centres[labels[lo:hi]] + 0.7 * noise) * scale[lo:hi, None]
    return emb, labels, pop


def synthetic_histories(labels: np.ndarray, pop: np.ndarray, n_users: int, seed: int = 1) -> list[np.ndarray]:
    """Dense-id histories of 20-50 items, each from 1-3 clusters (picked by size), items by popularity."""
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(labels.max() + 2))
    mass = np.bincount(labels).astype(np.float64)
    out = []
    for _ in range(n_users):
        clusters = rng.choice(len(mass), size=int(rng.integers(1, 4)), p=mass / mass.sum())
        members = np.concatenate([order[starts[c] : starts[c + 1]] for c in clusters])
        size = min(int(rng.integers(20, 51)), len(members))
        # weighted sampling without replacement in one pass (Efraimidis & Spirakis 2006): the `size`
        # smallest Exp(1) / weight; numpy's choice(p=..., replace=False) redraws and took minutes at 1M
        keys = rng.exponential(size=len(members)) / pop[members]
        out.append(members[np.argpartition(keys, size - 1)[:size]].astype(np.int64) + 1)
    return out


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def recall_at(ids: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a[:k].tolist()) & set(b.tolist())) / k for a, b in zip(ids, truth, strict=True)]))


def latency_ms(index: Any, queries: np.ndarray, k: int, batch: int) -> dict[str, float]:
    times = []
    for lo in range(0, len(queries) - batch + 1, batch):
        t = time.perf_counter()
        index.search(queries[lo : lo + batch], k)
        times.append((time.perf_counter() - t) * 1000)
    arr = np.asarray(times)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "calls": len(arr)}


def cached_index(emb: np.ndarray, spec: Any, n: int) -> tuple[Any, dict[str, Any]]:
    """Build (or read from runs/catalogue/) the spec's index; build time and RSS delta of the build."""
    import faiss

    from training.index import build_index, set_search_params

    path = CACHE / f"index-{n}-{DIM}-{spec.type.replace(',', '_')}-{json.dumps(spec.build_params, sort_keys=True)}.faiss"
    rss0 = rss_bytes()
    t = time.perf_counter()
    if path.is_file():
        index = faiss.read_index(str(path))
        set_search_params(index, spec.params)
        info = {"cached": True, "load_s": time.perf_counter() - t}
        info.update(json.loads(path.with_suffix(".json").read_text()))
    else:
        index = build_index(emb, spec)
        info = {"cached": False, "build_s": time.perf_counter() - t, "build_rss_delta_bytes": rss_bytes() - rss0}
        CACHE.mkdir(parents=True, exist_ok=True)
        faiss.write_index(index, str(path))
        path.with_suffix(".json").write_text(json.dumps(info))
    info["serialized_bytes"] = path.stat().st_size
    info["rss_after_load_delta_bytes"] = rss_bytes() - rss0
    info["cache_path"] = str(path.relative_to(REPO))
    return index, info


def sweep(index: Any, name: str, values: list[int], queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    from training.index import set_search_params

    rows = []
    for v in values:
        set_search_params(index, {name: v})
        t = time.perf_counter()
        ids = index.search(queries, truth.shape[1])[1]
        rows.append({name: v, "recall@10": recall_at(ids, truth),
                     "batched_ms_per_query": (time.perf_counter() - t) * 1000 / len(queries)})
        log.info("  %s=%d recall@10 %.4f", name, v, rows[-1]["recall@10"])
    return rows


def cpu_spec(n: int, args: argparse.Namespace) -> Any:
    """The chooser's CPU spec, with --ef-search overriding its efSearch (to measure the trade-off)."""
    from training.index import choose_index

    spec = choose_index(n, DIM, "cpu")
    if args.ef_search and "efSearch" in spec.params:
        spec = dataclasses.replace(spec, params={"efSearch": args.ef_search},
                                   reason=f"{spec.reason}; efSearch {args.ef_search} set by --ef-search")
    return spec


def bench_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from training.index import choose_index, set_search_params

    t = time.perf_counter()
    emb, labels, pop = synthetic_items(n, DIM, seed=args.seed)
    histories = synthetic_histories(labels, pop, args.queries, seed=args.seed + 1)
    queries = np.stack([emb[h].mean(axis=0) for h in histories]).astype(np.float32)  # the mean-pool encoder
    log.info("%d items: synthetic data in %.1fs", n, time.perf_counter() - t)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(np.ascontiguousarray(emb[1:]))
    t = time.perf_counter()
    truth = exact.search(queries, 10)[1] + 1  # FAISS ids of the flat index are rows - 1
    row: dict[str, Any] = {"n_items": n, "dim": DIM, "queries": len(queries), "exact_search_s": time.perf_counter() - t,
                           "exact": {"serialized_bytes": n * DIM * 4,
                                     "latency_b1_ms": latency_ms(exact, queries[: args.latency_queries], 10, 1),
                                     "latency_b32_ms": latency_ms(exact, queries[: args.latency_queries], 10, 32)}}
    del exact
    specs = {"cpu": cpu_spec(n, args)}
    if args.gpu_spec:
        specs["gpu (IVF, searched on the CPU)"] = choose_index(n, DIM, "gpu")
    for device, spec in specs.items():
        log.info("%d items, %s: %s %s %s", n, device, spec.type, spec.params, spec.build_params)
        index, info = cached_index(emb, spec, n)
        ((name, chosen),) = spec.params.items()
        grid = sorted({16, 32, 64, 128, 256, 512, int(chosen)})
        curve = sweep(index, name, grid, queries, truth)
        set_search_params(index, spec.params)
        ids = index.search(queries, 10)[1]
        row[device] = {
            "type": spec.type, "params": spec.params, "build_params": spec.build_params, "reason": spec.reason,
            **info, "recall@10": recall_at(ids, truth), "sweep": curve,
            "latency_b1_ms": latency_ms(index, queries, 10, 1),
            "latency_b32_ms": latency_ms(index, queries, 10, 32),
        }
        log.info("  chosen %s: recall@10 %.4f", spec.params, row[device]["recall@10"])
        if device == "cpu" and n == max(args.sizes):
            row["_index"], row["_emb"], row["_labels"], row["_pop"] = index, emb, labels, pop
    return row


# ---- the service end to end ----


def write_bodies(histories: list[list[str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for h in histories:
            f.write(json.dumps({"history": h, "k": 10, "explain": False}, separators=(",", ":")) + "\n")
    return path


def small_bundle(args: argparse.Namespace) -> tuple[Path, str]:
    current = Path(args.small_bundle)
    if (current / "manifest.json").is_file():
        return current.resolve(), f"ML-100K bundle {current.resolve().name} (SASRec encoder)"
    from tests.service.bundle_factory import build_bundle

    root = CACHE / "bundle-small-1682"
    if not (root / "manifest.json").is_file():
        build_bundle(root, dim=DIM, max_len=MAX_LEN, n_items=1682, bundle_id="bench-small-1682")
    return root, f"{current} not found: a 1,682-item fixture bundle (mean-pool encoder, flat index)"


def big_bundle(row: dict[str, Any], args: argparse.Namespace) -> Path:
    from recbundle import load_manifest
    from tests.service.bundle_factory import build_bundle

    n = row["n_items"]
    spec = cpu_spec(n, args)
    root = CACHE / f"bundle-{n}-{spec.type}-{'-'.join(f'{k}{v}' for k, v in spec.params.items())}"
    try:
        if load_manifest(root, verify=False).index.params == spec.params:
            return root
    except Exception:  # absent or stale: rebuild
        pass
    t = time.perf_counter()
    build_bundle(root, dim=DIM, max_len=MAX_LEN, n_items=n, bundle_id=f"bench-synthetic-{n}", embeddings=row["_emb"],
                 index=row["_index"], index_ref={"type": spec.type, "params": spec.params,
                                                 "build_params": spec.build_params, "reason": spec.reason})
    log.info("bundle %s written in %.0fs", root, time.perf_counter() - t)
    return root


@contextmanager
def serving(bundle: Path) -> Iterator[tuple[str, list[Any]]]:
    """A uvicorn worker serving `bundle` (no LLM): yields its URL and processes, after /readyz says ready."""
    import psutil

    from scripts.procs import free_port, server, uvicorn_cmd

    port = free_port()
    env = {"SEQREC_BUNDLE_DIR": str(bundle), "SEQREC_LLM_BACKEND": "none", "SEQREC_LOG_LEVEL": "warning"}
    with server(uvicorn_cmd(port), env, port, timeout_s=600) as srv:
        yield srv.url, [p for p in psutil.Process().children(recursive=True) if str(port) in " ".join(p.cmdline())]


def load(url: str, procs: list[Any], bodies: Path, args: argparse.Namespace) -> dict[str, Any]:
    from loadtest import run_wrk

    run_wrk(url, bodies, args.concurrency, 3)  # warm-up
    result = run_wrk(url, bodies, args.concurrency, args.duration)
    result["server_rss_bytes"] = sum(p.memory_info().rss for p in procs)
    return result


def bench_service(big: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from loadtest import catalogue_ids

    small_root, small_note = small_bundle(args)
    big_root = big_bundle(big, args)
    out: dict[str, Any] = {"small_bundle": small_note, "big_bundle": f"{big['n_items']} synthetic items, {big['cpu']['type']} "
                           f"{big['cpu']['params']}, mean-pool encoder", "concurrency": args.concurrency,
                           "duration_s": args.duration, "rounds": []}
    raw = catalogue_ids(big_root)
    hist = synthetic_histories(big["_labels"], big["_pop"], args.bodies, seed=args.seed + 2)
    big_bodies = write_bodies([[raw[int(i)] for i in h] for h in hist], CACHE / "bodies-big.jsonl")
    raw_small = catalogue_ids(small_root)
    rng = np.random.default_rng(args.seed + 3)
    n_small = len(raw_small) - 1
    small_hist = [rng.choice(np.arange(1, n_small + 1), size=int(rng.integers(20, 51)), replace=False)
                  for _ in range(args.bodies)]
    small_bodies = write_bodies([[raw_small[int(i)] for i in h] for h in small_hist], CACHE / "bodies-small.jsonl")
    # both servers stay up (an idle one costs no CPU) and the wrk runs alternate, so drift in the shared
    # machine's load hits both
    t = time.perf_counter()
    with serving(small_root) as (small_url, small_procs):
        out["small_ready_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with serving(big_root) as (big_url, big_procs):
            out["big_ready_s"] = time.perf_counter() - t
            for r in range(args.rounds):
                one = {"small": load(small_url, small_procs, small_bodies, args),
                       "big": load(big_url, big_procs, big_bodies, args)}
                one["p99_ratio"] = one["big"]["p99_ms"] / one["small"]["p99_ms"]
                log.info("round %d: small %s / big %s", r, one["small"], one["big"])
                out["rounds"].append(one)
    return out


# ---- report ----


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Catalogue scale: index by catalogue size, recall, memory, `/v1/recommend` latency",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; faiss {report['faiss']}, numpy {report['numpy']}. One run; the CPU was "
        "shared with other engineers' jobs, so latencies are noisy.",
        "",
        "## Index per catalogue size (search on the CPU, 1 OpenMP thread, k = 10)",
        "",
        f"{report['queries']} users per size; recall@10 against exact inner-product search (IndexFlatIP).",
        "",
        "| items | index | params | build s | serialized MiB | RSS delta MiB | recall@10 | b1 p50 / p99 ms | b32 p50 / p99 ms |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["sizes"]:
        e = row["exact"]
        lines.append(f"| {row['n_items']:,} | exact (Flat) | | | {_mib(e['serialized_bytes'])} | | 1 | "
                     f"{e['latency_b1_ms']['p50']:.2f} / {e['latency_b1_ms']['p99']:.2f} | "
                     f"{e['latency_b32_ms']['p50']:.2f} / {e['latency_b32_ms']['p99']:.2f} |")
        for device in [k for k in row if k not in ("exact",) and isinstance(row[k], dict) and "type" in row[k]]:
            d = row[device]
            build = f"{d['build_s']:.0f}" if "build_s" in d else "?"
            lines.append(
                f"| {row['n_items']:,} | {d['type']} ({device}) | {d['params']} {d['build_params']} | {build} | "
                f"{_mib(d['serialized_bytes'])} | {_mib(d.get('build_rss_delta_bytes', 0))} | {d['recall@10']:.4f} | "
                f"{d['latency_b1_ms']['p50']:.2f} / {d['latency_b1_ms']['p99']:.2f} | "
                f"{d['latency_b32_ms']['p50']:.2f} / {d['latency_b32_ms']['p99']:.2f} |")
    lines += ["", "Recall@10 by search parameter (batched search of all users, ms per query):", ""]
    for row in report["sizes"]:
        for device in [k for k in row if isinstance(row[k], dict) and "sweep" in row[k]]:
            d = row[device]
            name = next(iter(d["params"]))
            cells = ", ".join(f"{s[name]}: {s['recall@10']:.3f} ({s['batched_ms_per_query']:.2f} ms)" for s in d["sweep"])
            lines.append(f"- {row['n_items']:,} items, {d['type']}, {name}: {cells}")
    svc = report.get("service")
    if svc:
        lines += [
            "",
            f"## `/v1/recommend` end to end (wrk -t1 -c{svc['concurrency']}, {svc['duration_s']} s per server after a "
            "3 s warm-up, one uvicorn worker, no explanations)",
            "",
            f"- small: {svc['small_bundle']}",
            f"- big: {svc['big_bundle']}",
            "",
            f"Start-up to ready (checksums, catalogue, encoder, index): small {svc['small_ready_s']:.0f} s, "
            f"big {svc['big_ready_s']:.0f} s.",
            "",
            "| round | bundle | req/s | p50 ms | p99 ms | errors | server RSS MiB |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for i, rnd in enumerate(svc["rounds"]):
            for name in ("small", "big"):
                r = rnd[name]
                lines.append(f"| {i + 1} | {name} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                             f"{r['errors']} | {_mib(r['server_rss_bytes'])} |")
        ratios = ", ".join(f"{r['p99_ratio']:.2f}" for r in svc["rounds"])
        lines += ["", f"p99 ratio big / small per round: {ratios} (target ≤ 2)."]
    lines += ["", "## Targets", ""] + [f"- {t}" for t in report["targets"]]
    return "\n".join(lines) + "\n"


def targets(report: dict[str, Any]) -> list[str]:
    out = []
    for row in report["sizes"]:
        r = row["cpu"]["recall@10"]
        out.append(f"{row['n_items']:,} items, {row['cpu']['type']} {row['cpu']['params']}: recall@10 {r:.4f} "
                   f"({'meets' if r >= 0.95 else 'misses'} ≥ 0.95)")
    if report.get("service"):
        worst = max(r["p99_ratio"] for r in report["service"]["rounds"])
        out.append(f"p99 big / small, worst round: {worst:.2f} ({'meets' if worst <= 2 else 'misses'} ≤ 2)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000, help="users whose recall@10 is measured")
    parser.add_argument("--latency-queries", type=int, default=300, help="users for the exact-search latency")
    parser.add_argument("--gpu-spec", action="store_true", help="also build the GPU spec (IVF) and search it here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ef-search", type=int, default=0, help="override the chosen HNSW efSearch")
    parser.add_argument("--service", action="store_true", help="also load-test the service (largest size)")
    parser.add_argument("--small-bundle", default="/work/main/bundles/current")
    parser.add_argument("--bodies", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    parser.add_argument("-d", "--duration", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="docs/results/catalogue-scale")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import faiss

    faiss.omp_set_num_threads(1)
    report: dict[str, Any] = {
        "command": "OMP_NUM_THREADS=1 nice -n 15 python scripts/bench_catalogue.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} shared CPU cores ({platform.processor() or platform.machine()}), no GPU",
        "faiss": faiss.__version__, "numpy": np.__version__, "queries": args.queries,
        "sizes": [bench_size(n, args) for n in sorted(args.sizes)],
    }
    if args.service:
        report["service"] = bench_service(report["sizes"][-1], args)
    for row in report["sizes"]:
        for key in [k for k in row if k.startswith("_")]:
            del row[key]
    report["targets"] = targets(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
