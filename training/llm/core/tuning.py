"""The one training loop of the LLM methods: mini-batches from one or more tasks, only the parameters handed
in are updated (a soft prompt in DELRec stage 1, LoRA in stage 2 and in ReLRec), and the best validation
HR@1 of the ranker is kept. A task is a list of either
- RankItems: the label cross-entropy of the shared ranker (ranker.py), candidate order reshuffled per use;
- TextItems: the target-token cross-entropy of text_task.py (ReLRec's pseudo-label reconstruction).

Every task draws its batches from its own random stream (seeded by the task's name), so a run's "rec" batches
do not depend on which other tasks train beside it: ReLRec and its plain fine-tune ablation see the same
ranking questions in the same order. `TuneConfig.steps_from` names the task whose pass is an epoch (the others
cycle or stop early); by default the largest task's.

Task weighting:
- "fixed": sum of `task_weights[t] * loss_t`; a task of weight 0 is not even run (its forward would still
  consume random state and time), so weight 0 is exactly the run without that task;
- "gradnorm": DELRec's dynamic loss weighting (official code haoge6660101/DELRec_hao, MTL/MTL.py,
  `dynamic_loss_weighting`, alpha = 0.5): r_t = (L_t / L_t(0)) / ||grad_theta L_t||, w_t = r_t^a / sum_j r_j^a,
  with theta the trainable parameters. There L_t(0) is the loss itself (detached), so the ratio is 1 and
  r_t = 1 / ||grad L_t||: the task whose gradient is smaller gets the larger weight. We take the weights as
  constants (the official code lets autograd differentiate the L/L.detach() factor, whose value is 1) and
  apply sum_t w_t * grad L_t directly from the per-task gradients, so no third backward is needed.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from training.llm.core.ranker import LabelRanker, RankItem
from training.llm.core.soft_prompt import SoftPrompt
from training.llm.core.text_task import TextItem, TextScorer
from training.train import distributed

log = logging.getLogger(__name__)
TaskItem = RankItem | TextItem


@dataclass
class TuneConfig:
    epochs: int = 1
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    weighting: Literal["fixed", "gradnorm"] = "fixed"
    task_weights: dict[str, float] = field(default_factory=dict)  # "fixed": missing tasks weigh 1
    gradnorm_alpha: float = 0.5
    max_steps: int | None = None  # per epoch; None = one pass over the `steps_from` task
    steps_from: str | None = None  # the task whose pass is an epoch; None = the largest task
    seed: int = 0

    def cache_key(self) -> dict[str, Any]:
        """The fields for a stage's cache key. Fields added after stages were first cached are left out
        while unset, so adding an option does not throw away finished (hours-long) stages; the same rule
        as the SR models' folder hashes (training/pipeline.py `_model_hash`)."""
        key = asdict(self)
        for name in ("steps_from",):
            if key[name] is None:
                key.pop(name)
        return key


@dataclass
class TuneResult:
    best_epoch: int
    best_valid_hr1: float
    curves: dict[str, list[float]]  # epoch, valid_hr1, epoch_wall_s
    step_loss: dict[str, list[float]]  # task -> loss per step
    step_weight: dict[str, list[float]]  # task -> weight per step
    n_examples: dict[str, int]
    s_per_step: float

    def report(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "best_valid_hr1": self.best_valid_hr1,
            "curves": self.curves,
            "n_examples": self.n_examples,
            "s_per_step": self.s_per_step,
            "first_loss": {t: float(np.mean(v[:5])) for t, v in self.step_loss.items() if v},
            "last_loss": {t: float(np.mean(v[-5:])) for t, v in self.step_loss.items() if v},
            "mean_weight": {t: float(np.mean(v)) for t, v in self.step_weight.items() if v},
        }


def hr1(ranker: LabelRanker, model: Any, items: Sequence[RankItem], soft: SoftPrompt | None, bs: int) -> float:
    if not items:
        return float("nan")
    scores = ranker.scores(model, items, soft, bs)
    return float(np.mean(scores.argmax(1) == np.array([it.target for it in items])))


def _batches(n: int, bs: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`steps` index batches cycling through shuffled passes over n items."""
    order: list[int] = []
    while len(order) < steps * bs:
        order.extend(rng.permutation(n).tolist())
    return [np.array(order[i * bs : (i + 1) * bs]) for i in range(steps)]


def _apply(params: list[nn.Parameter], grads: dict[str, tuple[torch.Tensor, ...]], weights: dict[str, float]) -> None:
    for i, p in enumerate(params):
        p.grad = sum(weights[t] * g[i] for t, g in grads.items())  # type: ignore[assignment]


def _gradnorm_weights(grads: dict[str, tuple[torch.Tensor, ...]], alpha: float) -> dict[str, float]:
    norms = {t: float(torch.sqrt(sum((x.float() ** 2).sum() for x in g))) for t, g in grads.items()}  # type: ignore[arg-type]
    rates = {t: (1.0 / max(n, 1e-12)) ** alpha for t, n in norms.items()}
    total = sum(rates.values())
    return {t: r / total for t, r in rates.items()}


def active_tasks(tasks: Mapping[str, Sequence[TaskItem]], cfg: TuneConfig) -> dict[str, Sequence[TaskItem]]:
    """The tasks that train: non-empty and, under "fixed" weighting, of non-zero weight."""
    fixed_zero = {t for t in tasks if cfg.weighting == "fixed" and cfg.task_weights.get(t, 1.0) == 0.0}
    if fixed_zero:
        log.info("tasks of weight 0 are not run: %s", sorted(fixed_zero))
    return {t: v for t, v in tasks.items() if v and t not in fixed_zero}


def planned_steps(tasks: Mapping[str, Sequence[TaskItem]], cfg: TuneConfig) -> int:
    """Optimiser steps per epoch: a pass over `cfg.steps_from` (or the largest task), capped by max_steps."""
    active = active_tasks(tasks, cfg)
    if not active:
        return 0
    sizes = {t: -(-len(v) // cfg.batch_size) for t, v in active.items()}
    steps = sizes[cfg.steps_from] if cfg.steps_from in sizes else max(sizes.values())
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def _task_rng(seed: int, task: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.encode())])


def _prepared(item: TaskItem, rng: np.random.Generator) -> TaskItem:
    """A training copy: ranking questions get a fresh candidate order, text items are used as they are."""
    return item.shuffled(rng) if isinstance(item, RankItem) else item


def task_loss(model: Any, ranker: LabelRanker, text: TextScorer, items: Sequence[TaskItem],
              soft: SoftPrompt | None) -> tuple[torch.Tensor, int]:
    """(the mean loss of one task's batch, what it averages over): items for ranking questions, target tokens
    for text items (a task holds one kind)."""
    if isinstance(items[0], TextItem):
        return text.loss_and_count(model, items, soft)  # type: ignore[arg-type]
    return ranker.loss(model, items, soft), len(items)  # type: ignore[arg-type]


def _task_grads(model: Any, ranker: LabelRanker, text: TextScorer, soft: SoftPrompt | None,
                items: Sequence[TaskItem], params: list[nn.Parameter]) -> tuple[tuple[torch.Tensor, ...], float]:
    """(gradients, loss) of one task's global batch. Under torchrun each rank takes its share and the
    shares are averaged by weight (training/train/distributed.py), which gives the one-process figures."""
    world = distributed.current()
    mine = distributed.share(items, world)
    if mine:
        loss, weight = task_loss(model, ranker, text, mine, soft)
        raw = torch.autograd.grad(loss, params, allow_unused=True)
        grads = tuple(torch.zeros_like(p) if g is None else g for g, p in zip(raw, params, strict=True))
        value = loss.item()
    else:  # a batch smaller than the world: this rank adds nothing
        grads, value, weight = tuple(torch.zeros_like(p) for p in params), 0.0, 0
    if not world.distributed:
        return grads, value
    averaged, value = distributed.average_grads(grads, value, float(weight))
    return tuple(averaged), value


def _step(
    model: Any,
    ranker: LabelRanker,
    text: TextScorer,
    soft: SoftPrompt | None,
    batch: dict[str, list[TaskItem]],
    params: list[nn.Parameter],
    cfg: TuneConfig,
) -> tuple[dict[str, float], dict[str, float]]:
    """One optimisation step's gradients (set on `params`); returns (losses, weights)."""
    grads: dict[str, tuple[torch.Tensor, ...]] = {}
    losses: dict[str, float] = {}
    for task, items in batch.items():
        grads[task], losses[task] = _task_grads(model, ranker, text, soft, items, params)
    if cfg.weighting == "gradnorm" and len(grads) > 1:
        weights = _gradnorm_weights(grads, cfg.gradnorm_alpha)
    else:
        weights = {t: cfg.task_weights.get(t, 1.0) for t in grads}
    _apply(params, grads, weights)
    return losses, weights


@dataclass
class _Record:
    """What the loop keeps while it runs: the curves, per-step losses and weights, the best state."""

    curves: dict[str, list[float]]
    step_loss: dict[str, list[float]]
    step_weight: dict[str, list[float]]
    best: float = -1.0
    best_epoch: int = 0
    best_state: list[torch.Tensor] | None = None

    def end_epoch(self, epoch: int, score: float, wall: float, params: list[nn.Parameter]) -> None:
        self.curves["epoch"].append(epoch)
        self.curves["valid_hr1"].append(score)
        self.curves["epoch_wall_s"].append(wall)
        log.info("epoch %d: valid HR@1 %.4f, %.1f s", epoch, score, wall)
        key = score if np.isfinite(score) else float(epoch)  # no validation: keep the last epoch
        if key > self.best:
            self.best, self.best_epoch = key, epoch
            self.best_state = [p.detach().clone() for p in params]


def train_ranker(
    model: Any,
    ranker: LabelRanker,
    tasks: Mapping[str, Sequence[TaskItem]],
    params: list[nn.Parameter],
    cfg: TuneConfig,
    soft: SoftPrompt | None = None,
    valid: Sequence[RankItem] = (),
    on_step: Callable[[int], None] | None = None,
    text: TextScorer | None = None,
) -> TuneResult:
    """Update `params` (and nothing else) on every task: rank each ranking task's right candidate first,
    write each text task's target. `on_step(global_step)` runs after each optimiser step with the gradients
    still set (AdaLoRA's rank allocation needs them). `text` scores the text tasks (default: a TextScorer
    on the ranker's tokenizer)."""
    torch.manual_seed(cfg.seed)
    text = text or TextScorer(ranker.tokenizer)
    active = active_tasks(tasks, cfg)
    rngs = {t: _task_rng(cfg.seed, t) for t in active}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = planned_steps(tasks, cfg)
    rec = _Record({"epoch": [], "valid_hr1": [], "epoch_wall_s": []},
                  {t: [] for t in active}, {t: [] for t in active})
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        plans = {t: _batches(len(v), min(cfg.batch_size, len(v)), steps, rngs[t]) for t, v in active.items()}
        for s in range(steps):
            batch = {t: [_prepared(active[t][i], rngs[t]) for i in plans[t][s]] for t in active}
            opt.zero_grad(set_to_none=True)
            losses, weights = _step(model, ranker, text, soft, batch, params, cfg)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if on_step is not None:
                on_step((epoch - 1) * steps + s)
            for t in active:
                rec.step_loss[t].append(losses[t])
                rec.step_weight[t].append(weights[t])
            if s % 10 == 0:
                log.info("epoch %d step %d/%d: loss %s weights %s", epoch, s + 1, steps,
                         {t: round(v, 3) for t, v in losses.items()}, {t: round(v, 3) for t, v in weights.items()})
        score = hr1(ranker, model, valid, soft, cfg.batch_size * 2)
        rec.end_epoch(epoch, score, time.perf_counter() - start, params)
    if rec.best_state is not None and rec.best_epoch != cfg.epochs:
        with torch.no_grad():
            for p, v in zip(params, rec.best_state, strict=True):
                p.copy_(v)
    model.eval()
    n_steps = max(1, steps * cfg.epochs)
    best_hr1 = float(rec.curves["valid_hr1"][rec.best_epoch - 1]) if rec.best_epoch else float("nan")
    return TuneResult(rec.best_epoch, best_hr1, rec.curves, rec.step_loss, rec.step_weight,
                      {t: len(v) for t, v in tasks.items()}, sum(rec.curves["epoch_wall_s"]) / n_steps)
