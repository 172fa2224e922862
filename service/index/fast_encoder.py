"""Serve the exported encoder through TorchScript traces at a few fixed batch sizes.

A `torch.export` program runs as an FX graph interpreted op by op in Python: about 0.65 ms of fixed,
GIL-holding overhead per call on this CPU (SASRec, 2 blocks, d=64: 1.0 ms at batch 1 against 0.35 ms
traced). Under load that overhead competes with the event loop for the GIL. A trace replays the same aten
ops from C++ (and releases the GIL while it runs) but fixes the batch size it was traced at, so we trace
once per bucket (1, 2, 4, ... max_batch) when the bundle loads. Bigger batches, or a trace that fails or
disagrees with the program, fall back to the program itself.

A batch runs as the cheapest cover of its rows by buckets, by the cost of each trace timed when it is built:
padding every batch up to the next bucket cost up to twice the work (the ML-100K SASRec: 17 rows padded to
32 took 3.1 ms against 1.4 ms for 16 rows and 0.34 ms for 1, so 16 + 1 is the cover), and on this CPU 64
rows cost more than two calls of 32. The all-padding rows of a partly filled bucket are sliced off (the
encoder handles them).
"""

from __future__ import annotations

import logging
import time
import warnings

import torch

logger = logging.getLogger(__name__)


class BucketedEncoder(torch.nn.Module):
    def __init__(self, program: torch.nn.Module, max_len: int, max_batch: int = 64) -> None:
        super().__init__()
        self.program = program
        self.max_len = max_len
        self.traces: dict[int, torch.jit.ScriptModule] = {}
        self.cost: dict[int, float] = {}  # bucket -> seconds of CPU per call, timed once
        size = 1
        while size <= max_batch:
            traced = _trace(program, size, max_len)
            if traced is None:
                break
            self.traces[size] = traced
            self.cost[size] = _time(traced, size, max_len)
            size *= 2
        self.plans = cheapest_covers(self.cost, max(self.traces, default=0))

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        b = seqs.shape[0]
        if b >= len(self.plans):  # larger than the largest bucket (or no trace): the program itself
            return self.program(seqs)
        outs, start = [], 0
        for bucket in self.plans[b]:
            part = seqs[start : start + bucket]
            rows = part.shape[0]
            if rows < bucket:
                part = torch.cat([part, part.new_zeros((bucket - rows, seqs.shape[1]))])
            outs.append(self.traces[bucket](part)[:rows])
            start += rows
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def cheapest_covers(cost: dict[int, float], max_batch: int) -> list[list[int]]:
    """plans[b]: the buckets (largest first) whose calls cover b rows at the least total cost (the last may be
    partly padding), for b = 0 .. max_batch. Unbounded knapsack over the buckets, a few hundred steps."""
    best = [0.0] + [float("inf")] * max_batch
    choice = [0] * (max_batch + 1)
    for b in range(1, max_batch + 1):
        for size, c in cost.items():
            total = c + best[max(0, b - size)]
            if total < best[b]:
                best[b], choice[b] = total, size
    plans: list[list[int]] = [[]]
    for b in range(1, max_batch + 1):
        plans.append(sorted([choice[b], *plans[max(0, b - choice[b])]], reverse=True))
    return plans


def _time(traced: torch.jit.ScriptModule, batch: int, max_len: int, warmup: int = 3, reps: int = 9) -> float:
    """The least CPU time of one call over `reps` (this thread's: other jobs only ever add to it), after the
    profiling runs in which TorchScript specialises the graph."""
    probe = torch.randint(1, 3, (batch, max_len))
    best = float("inf")
    with torch.inference_mode():
        for i in range(warmup + reps):
            t = time.thread_time()
            traced(probe)
            if i >= warmup:
                best = min(best, time.thread_time() - t)
    return best


def _trace(program: torch.nn.Module, batch: int, max_len: int) -> torch.jit.ScriptModule | None:
    probe = torch.randint(1, 3, (batch, max_len))
    probe[:, : max_len // 2] = 0
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(program, probe, check_trace=False).eval())
            ok = torch.allclose(traced(probe), program(probe), atol=1e-5, rtol=1e-4)
    except Exception as e:  # tracing is an optimisation: any failure keeps the exact program
        logger.warning("encoder trace at batch %d failed (%s); using the exported program", batch, e)
        return None
    if not ok:
        logger.warning("encoder trace at batch %d disagrees with the program; not used", batch)
        return None
    return traced
