"""Serve the exported encoder through a TorchScript trace instead of the `torch.export` program.

A `torch.export` program runs as an FX graph interpreted op by op in Python: about 0.65 ms of fixed,
GIL-holding overhead per call on this CPU (SASRec, 2 blocks, d=64: 1.0 ms at batch 1 against 0.35 ms
traced). Under load that overhead competes with the event loop for the GIL. A trace replays the same aten
ops from C++ and releases the GIL while it runs.

A plain trace fixes the batch size it was traced at: the exported graph's reshapes take the batch size as
`sym_size(seqs, 0)`, which the tracer records as a constant. So before tracing, a copy of the program gets
-1 in place of that size (the only thing the batch size is used for in a SASRec export) and the trace is
checked against the program at several batch sizes: one call serves any batch (`batch_generic`). Against
the bucketed traces below it costs the same at 1, 2, 4, 8 and 16 rows and less in between (11 rows: 0.86 ms
against 1.10 ms for 8 + 4), and it is one call, so a worker thread waits for the GIL twice per batch
instead of twice per bucket (each TorchScript call takes the GIL once more right after it starts, to ask
`torch.compiler.is_exporting()`: measured, docs/service.md).

An encoder whose graph uses the batch size otherwise (or a trace that disagrees) falls back to one trace
per bucket (1, 2, 4, ... max_batch), a batch running as the cheapest cover of its rows by buckets, by the
cost of each trace timed when it is built: padding every batch up to the next bucket cost up to twice the
work (17 rows padded to 32 took 3.1 ms against 1.4 ms for 16 and 0.34 ms for 1, so 16 + 1 is the cover),
and on this CPU 64 rows cost more than two calls of 32. The all-padding rows of a partly filled bucket are
sliced off (the encoder handles them). Bigger batches, or traces that fail, run the program itself.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings

import torch
from torch import fx

logger = logging.getLogger(__name__)


class TracedEncoder(torch.nn.Module):
    def __init__(self, program: torch.nn.Module, max_len: int, max_batch: int = 64) -> None:
        super().__init__()
        self.program = program
        self.max_len = max_len
        self.traces: dict[int, torch.jit.ScriptModule] = {}
        self.cost: dict[int, float] = {}  # bucket -> seconds of CPU per call, timed once
        self.generic = batch_generic(program, max_len, max_batch)
        if self.generic is None:  # buckets only without a generic trace
            size = 1
            while size <= max_batch:
                traced = _trace(program, size, max_len)
                if traced is None:
                    break
                self.traces[size] = traced
                self.cost[size] = _time(traced, size, max_len)
                size *= 2
        self.plans = cheapest_covers(self.cost, max(self.traces, default=0))
        mode = "one batch-generic trace" if self.generic is not None else f"traces at {sorted(self.traces)} rows"
        logger.info("encoder: %s", mode)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        if self.generic is not None:
            return self.generic(seqs)
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
    probe = _probe(batch, max_len)
    best = float("inf")
    with torch.inference_mode():
        for i in range(warmup + reps):
            t = time.thread_time()
            traced(probe)
            if i >= warmup:
                best = min(best, time.thread_time() - t)
    return best


def batch_generic(program: torch.nn.Module, max_len: int, max_batch: int) -> torch.jit.ScriptModule | None:
    """One trace that answers what the program answers at any batch size, or None (then: buckets).

    An exported program (an FX graph) is copied with -1 for the batch size in its reshapes; a graph that
    uses the batch size for anything else is left to the buckets. The trace is taken at `max_batch` rows
    and must equal the original program at 1, 3, `max_batch` and `max_batch` + 5 rows."""
    free = _batch_free(program) if isinstance(program, fx.GraphModule) else program
    if free is None:
        return None
    traced = _trace(free, max_batch, max_len)
    if traced is None:
        return None
    for batch in sorted({1, 3, max_batch, max_batch + 5}):
        probe = _probe(batch, max_len)
        try:
            with torch.inference_mode():
                ok = _same(traced(probe), program(probe))
        except Exception as e:  # e.g. a shape the trace baked in
            logger.info("encoder trace is not batch-generic (%s); tracing per batch size", e)
            return None
        if not ok:
            logger.info("encoder trace disagrees with the program at batch %d; tracing per batch size", batch)
            return None
    return traced


_RESHAPES = (torch.ops.aten.view.default, torch.ops.aten.reshape.default, torch.ops.aten._unsafe_view.default)


def _batch_free(program: fx.GraphModule) -> fx.GraphModule | None:
    """A copy of `program` whose reshapes infer the batch dimension (-1) instead of reading it from the input;
    None when the batch size has another use (a new tensor's shape, say), where -1 would not mean the same."""
    with warnings.catch_warnings():  # torch's own deprecation notices about the program's input spec
        warnings.simplefilter("ignore")
        gm = copy.deepcopy(program)
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    sizes = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch.ops.aten.sym_size.int]
    for node in sizes:
        tensor, dim = node.args
        if tensor not in inputs or dim != 0:  # only the batch size of the histories themselves
            return None
        for user in list(node.users):
            shape = user.args[1] if user.target in _RESHAPES and len(user.args) == 2 else None
            if not isinstance(shape, list | tuple) or [a for a in shape if isinstance(a, fx.Node)] != [node]:
                return None  # not a reshape whose only symbolic size is this one
            user.args = (user.args[0], [-1 if a is node else a for a in shape])
        gm.graph.erase_node(node)
    gm.recompile()
    return gm


def _same(out: torch.Tensor, ref: torch.Tensor) -> bool:
    """Equal shapes (allclose alone would broadcast a baked-in batch size) and values."""
    return out.shape == ref.shape and torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def _probe(batch: int, max_len: int) -> torch.Tensor:
    """Ids 1-2 (in any catalogue), the older half padding."""
    probe = torch.randint(1, 3, (batch, max_len))
    probe[:, : max_len // 2] = 0
    return probe


def _trace(program: torch.nn.Module, batch: int, max_len: int) -> torch.jit.ScriptModule | None:
    probe = _probe(batch, max_len)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(program, probe, check_trace=False).eval())
            ok = _same(traced(probe), program(probe))
    except Exception as e:  # tracing is an optimisation: any failure keeps the exact program
        logger.warning("encoder trace at batch %d failed (%s); using the exported program", batch, e)
        return None
    if not ok:
        logger.warning("encoder trace at batch %d disagrees with the program; not used", batch)
        return None
    return traced
