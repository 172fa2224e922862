"""Fit one model on one seed: mini-batch next-item training, validation NDCG@10 (full ranking) after
every `eval_every` epochs, early stopping with patience, best checkpoint restored at the end. Under
`torchrun` the batches are split across processes and the gradients averaged (training/train/distributed.py)."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from training.config import TrainConfig
from training.data.types import Split
from training.device import resolve_device
from training.eval import evaluate
from training.models.base import Batch, SequentialRecommender
from training.train import distributed
from training.train.batching import make_score_fn, training_windows

log = logging.getLogger(__name__)
VALID_METRIC = "NDCG@10"


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: float
    epochs_run: int
    wall_s: float
    curves: dict[str, list[float]] = field(default_factory=dict)  # epoch, train_loss, valid_ndcg@10


class _Loss(torch.nn.Module):
    """The model's training loss as a forward pass, which is what DDP wraps: its gradient hooks are armed by
    forward()."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.loss(batch)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit_model(
    model: SequentialRecommender,
    split: Split,
    cfg: TrainConfig,
    seed: int,
    checkpoint: Path | None = None,
    desc: str = "train",
) -> TrainResult:
    seed_everything(seed)
    start = time.perf_counter()
    max_len = model.max_len
    score_fn = make_score_fn(model, max_len, cfg.eval_batch_size)
    if not model.trainable:
        fit = getattr(model, "fit", None)
        if fit is not None:
            fit(split.train)
        valid = evaluate(score_fn, split, "full", "valid")[VALID_METRIC]
        return TrainResult(0, valid, 0, time.perf_counter() - start, {"epoch": [0], "valid_ndcg@10": [valid]})

    world = distributed.current()
    device = resolve_device(cfg.device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())  # this process's GPU (set by setup())
    model.to(device)
    step: torch.nn.Module = _Loss(model)
    if world.distributed:
        step = torch.nn.parallel.DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)
    inputs, targets = training_windows(split.train, max_len, cfg.windows)
    X, Y = torch.from_numpy(inputs), torch.from_numpy(targets)  # kept on the CPU; batches move
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    unseen, negatives_from = None, None
    if split.unseen_items is not None and len(split.unseen_items):
        if cfg.weight_decay:  # Adam's decay would move the held-out rows without any loss term
            raise ValueError("a split with held-out (unseen) items needs weight_decay: 0")
        unseen = torch.zeros(split.n_items + 1, dtype=torch.bool)
        unseen[torch.from_numpy(np.asarray(split.unseen_items, dtype=np.int64))] = True
        negatives_from = torch.nonzero(~unseen[1:]).flatten() + 1  # sampled negatives skip unseen items too
        unseen = unseen.to(device)
    curves: dict[str, list[float]] = {"epoch": [], "train_loss": [], "valid_ndcg@10": []}
    best, best_epoch, bad, best_state = -1.0, 0, 0, None
    bar = tqdm(range(1, cfg.epochs + 1), desc=desc, leave=False, dynamic_ncols=True)
    epoch = 0
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(X), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            y = Y[idx]
            if negatives_from is None:
                neg = torch.randint(1, split.n_items + 1, y.shape, generator=gen)
            else:
                neg = negatives_from[torch.randint(0, len(negatives_from), y.shape, generator=gen)]
            if world.distributed:  # every rank drew the same global batch and negatives: keep its part
                idx, y, neg = (distributed.shard(t, world) for t in (idx, y, neg))
            batch = Batch(inputs=X[idx].to(device), targets=y.to(device), negatives=neg.to(device), unseen=unseen)
            loss = step(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.item() * len(idx)
            n += len(idx)
        if world.distributed:  # the epoch's loss over all ranks' examples
            total, n_all = distributed.all_sum([total, float(n)], device)
            n = int(n_all)
        if not np.isfinite(total):
            raise FloatingPointError(f"{desc}: training loss is not finite at epoch {epoch}")
        if epoch % cfg.eval_every:
            continue
        valid = evaluate(score_fn, split, "full", "valid")[VALID_METRIC] if world.is_main else 0.0
        if world.distributed:  # one decision for all ranks: they must stop at the same epoch
            valid = distributed.broadcast_float(valid, device)
        curves["epoch"].append(epoch)
        curves["train_loss"].append(total / max(n, 1))
        curves["valid_ndcg@10"].append(valid)
        bar.set_postfix(loss=f"{total / max(n, 1):.4f}", ndcg10=f"{valid:.4f}", best=f"{max(best, valid):.4f}")
        if valid > best:
            best, best_epoch, bad = valid, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint is not None and world.is_main:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                torch.save(best_state, checkpoint)
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to("cpu")  # callers evaluate, save and export on the CPU
    wall = time.perf_counter() - start
    log.info("%s: best valid %s=%.4f at epoch %d (%d epochs, %.1fs)", desc, VALID_METRIC, best, best_epoch, epoch, wall)
    return TrainResult(best_epoch, best, epoch, wall, curves)
