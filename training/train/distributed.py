"""Data-parallel training under `torchrun` (PyTorch DDP): gloo on CPUs, NCCL on GPUs.

    torchrun --nproc_per_node=2 -m training train --preset ml-100k            # 2 processes (CPU or GPU)
    torchrun --nproc_per_node=8 -m training run --preset ml-100k --export-to bundles   # one node, 8 GPUs

    torchrun --nproc_per_node=2 -m training delrec --preset delrec-quick       # the LLM stages too

Every process holds the whole model and the same permutation of the training windows; each global batch
of `batch_size` windows is split across the processes and DDP averages the gradients, so one step sees the
same examples as in one process. Validation runs on rank 0 and its result is broadcast, so every process
stops at the same epoch. Files (prepared data, weights, results) are written by rank 0 only; the others wait
at a barrier and read them. Without torchrun (no WORLD_SIZE), nothing here changes anything.

The LLM stages (training/llm/core/tuning.py) take per-task gradients with `torch.autograd.grad` (DELRec's
dynamic weighting needs each task's own), which DDP's backward hooks do not see; they use `average_grads`
instead: each rank takes its share of the global batch and the gradients are averaged weighted by what each
share holds (items, or target tokens for text tasks), which is the one-process gradient. Scoring is split
the same way and gathered (`gather_rows`); stage folders are written by rank 0 (`on_main`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup() -> World:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT); a
    no-op in a plain process. On GPUs each process takes the GPU of its local rank."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        log.info("rank %d of %d joined (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return current()


def current() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_float(value: float, device: torch.device) -> float:
    """Rank 0's value on every rank."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def all_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's part of a global batch (contiguous, sizes differ by at most one)."""
    return batch.tensor_split(world.size)[world.rank]


def share(items: Sequence[T], world: World) -> Sequence[T]:
    """This rank's contiguous part of `items` (sizes differ by at most one), as `shard` cuts a tensor."""
    if not world.distributed:
        return items
    bounds = np.linspace(0, len(items), world.size + 1).round().astype(int)
    return items[bounds[world.rank] : bounds[world.rank + 1]]


def average_grads(grads: Sequence[torch.Tensor], loss: float, weight: float) -> tuple[list[torch.Tensor], float]:
    """(gradients, loss) of the whole global batch from every rank's share: each rank's mean-loss gradient
    weighted by `weight` (the items or tokens its share holds), summed over ranks in one all-reduce, divided
    by the total weight. A rank with an empty share passes zeros and weight 0."""
    flat = torch.cat([g.detach().reshape(-1).double() * weight for g in grads]
                     + [torch.tensor([loss * weight, weight], dtype=torch.float64, device=grads[0].device)])
    dist.all_reduce(flat)
    total = float(flat[-1])
    out, offset = [], 0
    for g in grads:
        out.append((flat[offset : offset + g.numel()] / total).reshape(g.shape).to(g.dtype))
        offset += g.numel()
    return out, float(flat[-2]) / total


def gather_rows(local: np.ndarray, world: World) -> np.ndarray:
    """Every rank's rows (its `share` of a list, scored), concatenated in rank order on every rank."""
    if not world.distributed:
        return local
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, local)
    return np.concatenate(parts)


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on rank 0 alone (it writes files); every rank gets its result (pickled)."""
    world = current()
    if not world.distributed:
        return fn(*args, **kwargs)
    box: list[Any] = [fn(*args, **kwargs) if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def local_size() -> int:
    """Processes on this machine (torchrun's LOCAL_WORLD_SIZE), 1 without torchrun: they share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
