"""CPU time per call of the encoder the service runs (the bundle's program as `load_bundle` serves it), for
one or more bundles side by side, on real users' histories:

    SEQREC_EXPORT_TABLE_MB=0 python -m training export --preset ml-100k --out /tmp/plain-bundles
    python scripts/bench_encoder.py --bundle /tmp/plain-bundles/current --label "no table" \
        --bundle bundles/current --label "first-block table" --out docs/results/encoder-table.json

Each round times every (batch size, bundle) pair once, the bundles in a rotated order, as the least-noisy
figure a shared machine gives: the median over `--calls` calls of this thread's CPU time (one intra-op
thread, as the service runs it). Batches are consecutive request bodies, so every call sees other
histories. The report gives each bundle's median over rounds and the per-round ratio to the first bundle.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.loadtest import machine, rotations  # noqa: E402
from service.core.history import left_pad  # noqa: E402
from service.index.bundle import Bundle, load_bundle  # noqa: E402
from service.index.fast_encoder import TracedEncoder  # noqa: E402


def histories(bundle: Bundle, bodies: Path) -> np.ndarray:
    """(n, max_len) left-padded dense ids of the bodies' inline histories (ids this bundle does not model
    are left out, as the service leaves out cold items)."""
    rows = []
    for line in bodies.read_text().splitlines():
        body = json.loads(line)
        ids = [e if isinstance(e, str) else e["item_id"] for e in body.get("history", [])]
        dense = [d for d in (bundle.catalogue.dense_of.get(e, 0) for e in ids) if d]
        if dense:
            rows.append(left_pad(dense, bundle.max_len))
    if not rows:
        raise SystemExit(f"no history in {bodies} names an item of {bundle.manifest.bundle_id}")
    return np.stack(rows)


def mode(encoder: torch.nn.Module) -> str:
    """How the service runs this encoder (service/index/fast_encoder.py): one trace for every batch size,
    traces per batch size, or the exported program itself."""
    if isinstance(encoder, TracedEncoder):
        return "one batch-generic trace" if encoder.generic is not None else f"traces at {sorted(encoder.traces)} rows"
    return "the exported program"


def time_calls(encoder: torch.nn.Module, seqs: np.ndarray, batch: int, calls: int, start: int) -> float:
    """Median CPU seconds of one call over `calls` batches taken in turn from `seqs`, from row `start`."""
    taken = [np.take(seqs, range(start + i * batch, start + (i + 1) * batch), axis=0, mode="wrap") for i in range(calls)]
    times = []
    with torch.inference_mode():
        for rows in taken:
            x = torch.from_numpy(rows)
            t = time.thread_time()
            encoder(x)
            times.append(time.thread_time() - t)
    return statistics.median(times)


def run(
    bundles: list[Path], bodies: Path, batches: list[int], rounds: int, calls: int, labels: list[str] | None = None
) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(bundles, bodies, batches, rounds, calls, labels)
    finally:
        torch.set_num_threads(threads)


def _run(
    bundles: list[Path], bodies: Path, batches: list[int], rounds: int, calls: int, labels: list[str] | None
) -> dict[str, Any]:
    loaded = [load_bundle(b) for b in bundles]
    labels = labels or [""] * len(bundles)
    if len(labels) != len(bundles):
        raise SystemExit(f"{len(labels)} labels for {len(bundles)} bundles")
    names = [
        f"{b.manifest.bundle_id} ({p})" + (f": {label}" if label else "")
        for b, p, label in zip(loaded, bundles, labels, strict=True)
    ]
    seqs = [histories(b, bodies) for b in loaded]
    tables = [json.loads((b.root / b.manifest.encoder.config_path).read_text()).get("first_block_table") for b in loaded]
    for b, s in zip(loaded, seqs, strict=True):  # warm: TorchScript specialises the graph on its first calls
        for batch in batches:
            time_calls(b.encoder, s, batch, 5, 0)
    per_round: dict[int, list[list[float]]] = {batch: [[] for _ in loaded] for batch in batches}
    orders = rotations(list(range(len(loaded))), rounds)
    for r, order in enumerate(orders):
        for batch in batches:
            for i in order:
                per_round[batch][i].append(time_calls(loaded[i].encoder, seqs[i], batch, calls, r * calls * batch))
    results = {}
    for batch in batches:
        cols = per_round[batch]
        row: dict[str, Any] = {
            "us_per_call": [round(statistics.median(c) * 1e6, 1) for c in cols],
            "us_per_row": [round(statistics.median(c) * 1e6 / batch, 1) for c in cols],
        }
        if len(loaded) > 1:
            row["ratio_to_first"] = [
                round(statistics.median([x / y for x, y in zip(c, cols[0], strict=True)]), 3) for c in cols[1:]
            ]
        results[str(batch)] = row
    return {
        "command": "python scripts/bench_encoder.py " + shlex.join(sys.argv[1:]),
        "machine": machine(),
        "bundles": names,
        "first_block_table": tables,
        "encoder_mode": [mode(b.encoder) for b in loaded],
        "histories": len(seqs[0]),
        "rounds": rounds,
        "calls_per_round": calls,
        "order_per_round": orders,
        "results": results,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# encoder CPU per call",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}",
        "",
        f"{report['histories']} real users' histories; {report['rounds']} rounds in rotated order, each the median "
        f"CPU time of {report['calls_per_round']} calls per batch size and bundle (one intra-op thread).",
        "",
    ]
    for i, (name, table, how) in enumerate(
        zip(report["bundles"], report["first_block_table"], report["encoder_mode"], strict=True)
    ):
        what = f"first-block table, {table['bytes'] / 2**20:.1f} MiB" if table else "no first-block table"
        lines.append(f"- bundle {i + 1}: {name} ({what}; served as {how})")
    n = len(report["bundles"])
    head = "| rows per call | " + " | ".join(f"bundle {i + 1}: median µs/call (µs/row)" for i in range(n))
    ratios = [f"bundle {i + 1} / bundle 1: median of per-round ratios" for i in range(1, n)]
    lines += ["", head + "".join(f" | {r}" for r in ratios) + " |", "|---:|" + "---:|" * (2 * n - 1)]
    for batch, row in report["results"].items():
        cells = [f"{c} ({r})" for c, r in zip(row["us_per_call"], row["us_per_row"], strict=True)]
        cells += [str(x) for x in row.get("ratio_to_first", [])]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    if n > 1:
        lines += ["", "The two measures can differ: the µs columns are each bundle's median over rounds, the ratios "
                  "the median of ratios taken within each round, where the bundles ran seconds apart. On this "
                  "shared machine trust a difference only where both agree."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, action="append", required=True, help="a bundle folder (repeatable)")
    p.add_argument("--label", action="append", help="what each bundle is, in --bundle order (repeatable)")
    p.add_argument("--bodies", type=Path, default=Path("docs/results/bodies_k10.jsonl"))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 11, 16, 32])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--out", type=Path, help="write the report here (.json, and .md beside it)")
    args = p.parse_args(argv)
    report = run(args.bundle, args.bodies, args.batches, args.rounds, args.calls, args.label)
    text = markdown(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
