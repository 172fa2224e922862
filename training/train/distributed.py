"""Data-parallel training under `torchrun` (PyTorch DDP): gloo on CPUs, NCCL on GPUs.

    torchrun --nproc_per_node=2 -m training train --preset ml-100k            # 2 processes (CPU or GPU)
    torchrun --nproc_per_node=8 -m training run --preset ml-100k --export-to bundles   # one node, 8 GPUs

Every process holds the whole model and the same permutation of the training windows; each global batch
of `batch_size` windows is split across the processes and DDP averages the gradients, so one step sees the
same examples as in one process. Validation runs on rank 0 and its result is broadcast, so every process
stops at the same epoch. Files (prepared data, weights, results) are written by rank 0 only; the others wait
at a barrier and read them. Without torchrun (no WORLD_SIZE), nothing here changes anything.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


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
