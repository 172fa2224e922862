"""Candidate-label scoring for the transformers backend (recbundle.rerank's rule: next-token log-probabilities
of the label tokens at the last position, normalised over the labels only).

Calls that queue up on the backend's single worker thread run together: the worker takes every pending
call with the same (adapter, soft prompt) and scores them in one left-padded forward pass. 8 rerank prompts
of ~530 tokens (SmolLM2 fp32, LoRA + soft prompt) on the 2 shared cores cost 1.9-2.2 s per prompt batched
vs 4.6-4.9 s one at a time with 2 intra-op threads (a single prompt's forward suffers most when another job
holds a core), and 1.8-1.9 s either way with 1 thread: batching never cost more in these runs.
Padding is on the left with an attention mask and explicit position ids (a forward call, unlike
`generate`, does not derive them from the mask), so each row's last position is its answer position and
its scores equal the unbatched ones (tests/service/llm/test_label_scoring.py checks it).

Under overload the queue would otherwise fail everyone: one batch of every queued call ran past the rerank
deadline, so all of them fell back (97 % at 8 concurrent requests, 3 s deadline). So, at the cost per prompt
measured so far, a batch is never larger than what the worker can finish before its earliest deadline, and
a call with less time left than one prompt costs fails at once instead of taking the worker's time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from service.llm.base import DeadlineExceeded


@dataclass
class ScoreJob:
    ids: list[int]  # prompt token ids
    label_ids: list[int]
    soft: bool
    adapter: str | None
    deadline: float  # time.monotonic()
    future: asyncio.Future[list[float]]
    cancelled: threading.Event = field(default_factory=threading.Event)  # the caller gave up

    def resolve(self, value: list[float] | BaseException) -> None:
        """Settle the caller's future from the worker thread (a no-op when the caller already gave up)."""
        self.future.get_loop().call_soon_threadsafe(_settle, self.future, value)


def _settle(future: asyncio.Future[list[float]], value: list[float] | BaseException) -> None:
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class ScoreQueue:
    """Pending score calls, handed to the worker in groups that can share a forward pass."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self._pending: list[ScoreJob] = []
        self._lock = threading.Lock()

    def put(self, job: ScoreJob) -> None:
        with self._lock:
            self._pending.append(job)

    def take_groups(self, row_cost_s: float | None = None) -> Iterator[list[ScoreJob]]:
        """Everything pending, in arrival order, grouped by (adapter, soft) into batches of at most
        `max_batch`, and of at most as many calls as fit before the batch's earliest deadline at
        `row_cost_s` seconds each (when known). Lazy: each batch is cut when the previous one is done;
        calls whose caller gave up are dropped, those that cannot finish in time fail without running."""
        with self._lock:
            jobs, self._pending = self._pending, []
        groups: dict[tuple[str | None, bool], list[ScoreJob]] = {}
        for job in jobs:
            groups.setdefault((job.adapter, job.soft), []).append(job)
        for group in groups.values():
            while group := _live(group, row_cost_s or 0.0):
                size = self.max_batch
                if row_cost_s:
                    budget = min(job.deadline for job in group[:size]) - time.monotonic()
                    size = max(1, min(size, int(budget / row_cost_s)))
                yield group[:size]
                group = group[size:]


def _live(jobs: list[ScoreJob], min_left_s: float) -> list[ScoreJob]:
    """The calls still worth running: not abandoned, and with at least `min_left_s` before the deadline."""
    now = time.monotonic()
    live = []
    for job in jobs:
        if job.cancelled.is_set():
            continue
        if job.deadline - now < min_left_s:
            job.resolve(DeadlineExceeded("score_labels() could not finish before its deadline"))
        else:
            live.append(job)
    return live


@torch.inference_mode()
def score_rows(model: Any, rows: list[torch.Tensor], label_ids: list[list[int]]) -> list[list[float]]:
    """rows: input embeddings (T_i, H) of each prompt -> per prompt, the log-softmax over its label tokens
    of the logits at its last position. One forward pass, left-padded."""
    width = max(r.shape[0] for r in rows)
    x = rows[0].new_zeros((len(rows), width, rows[0].shape[1]))  # (B, T, H)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=x.device)  # (B, T)
    for b, r in enumerate(rows):
        x[b, width - r.shape[0] :] = r
        mask[b, width - r.shape[0] :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): 0 at each row's first real position
    # logits_to_keep=1: the 49,152-way head only at the answer position (most of a forward pass otherwise)
    out = model(inputs_embeds=x, attention_mask=mask, position_ids=positions, logits_to_keep=1)
    last = out.logits[:, -1].float()  # (B, V)
    return [last[b, ids].log_softmax(-1).tolist() for b, ids in enumerate(label_ids)]
