"""P2Rec stage (a), information reconstruction: ONE example per user.

The prompt lists the user's training history; the LoRA-tuned LLM's pooled decoder state goes through a
linear head to K logits, trained to match the user's latent-category distribution (TSLRec/P2Rec, arXiv
2406.00333). This is the paper's user-level tuning: an epoch costs one forward/backward per user, where
instance-level tuning (see `efficiency.py`) costs one per history prefix.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from training.device import model_device
from training.llm.core.model import (
    EncoderConfig,
    LoraSettings,
    attach_lora,
    encode,
    length_batches,
    load_base,
    pad_batch,
)

log = logging.getLogger(__name__)


@dataclass
class StageAConfig:
    loss: Literal["kl", "mse"] = "kl"
    epochs: int = 2
    batch_size: int = 8
    lr: float = 2e-4  # LoRA parameters
    head_lr: float = 1e-3  # the freshly initialised linear head learns faster (ours)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    valid_frac: float = 0.1  # held-out users whose KL picks the epoch
    seed: int = 0


@dataclass
class StageAResult:
    model: Any  # PEFT-wrapped causal LM (LoRA kept; `merge_lora` merges it)
    head: nn.Linear
    best_epoch: int
    curves: dict[str, list[float]] = field(default_factory=dict)  # epoch, train_loss, valid_kl, epoch_wall_s
    step_loss: list[float] = field(default_factory=list)
    n_train: int = 0
    n_valid: int = 0
    train_tokens: int = 0  # prompt tokens per epoch
    train_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # rows of `prompts` tuned on
    valid_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # rows held out

    def report(self) -> dict[str, Any]:
        wall = self.curves.get("epoch_wall_s", [])
        mean_wall = float(np.mean(wall)) if wall else 0.0
        return {
            "best_epoch": self.best_epoch,
            "curves": self.curves,
            "n_train": self.n_train,
            "n_valid": self.n_valid,
            "train_tokens_per_epoch": self.train_tokens,
            "epoch_wall_s": mean_wall,
            "s_per_example": mean_wall / max(1, self.n_train),
            "tokens_per_s": self.train_tokens / mean_wall if mean_wall else 0.0,
        }


def stage_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """kl: KL(target || softmax(logits)), batch mean; mse: squared error on probabilities, summed over K
    and averaged over users (so its scale does not shrink with K)."""
    if kind == "kl":
        return F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")
    if kind == "mse":
        return ((F.softmax(logits, dim=-1) - target) ** 2).sum(-1).mean()
    raise ValueError(f"loss must be 'kl' or 'mse', not {kind!r}")


def split_users(n: int, valid_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = int(round(n * valid_frac)) if n >= 10 else 0
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def _trainable_state(model: Any, head: nn.Module) -> dict[str, torch.Tensor]:
    state = {f"m.{k}": v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    state.update({f"h.{k}": v.detach().clone() for k, v in head.state_dict().items()})
    return state


def _restore(model: Any, head: nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, v in model.named_parameters():
            if f"m.{k}" in state:
                v.copy_(state[f"m.{k}"])
    head.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("h.")})


@torch.no_grad()
def predict(
    model: Any, head: nn.Module, prompts: Sequence[list[int]], pad_id: int, pooling: str, batch_size: int
) -> np.ndarray:
    """(U, K) predicted category distributions for the given prompts (eval mode, no grad)."""
    model.eval()
    head.eval()
    device = model_device(model)
    out = np.zeros((len(prompts), head.out_features), dtype=np.float32)
    for idx in length_batches([len(p) for p in prompts], batch_size, None):
        ids, mask = pad_batch([prompts[i] for i in idx], pad_id, device)
        out[idx] = F.softmax(head(encode(model, ids, mask, pooling)).float(), dim=-1).cpu().numpy()
    return out


def evaluate_kl(
    model: Any,
    head: nn.Module,
    prompts: Sequence[list[int]],
    targets: np.ndarray,
    pad_id: int,
    pooling: str,
    batch_size: int,
) -> float:
    """Mean KL(target || prediction) over the given users (eval mode, no grad)."""
    if not len(prompts):
        return float("nan")
    from training.llm.p2rec.categories import kl_rows

    return float(kl_rows(targets, predict(model, head, prompts, pad_id, pooling, batch_size)).mean())


def train_stage_a(
    model: Any,
    pad_id: int,
    prompts: Sequence[list[int]],
    targets: np.ndarray,
    cfg: StageAConfig,
    lora: LoraSettings,
    pooling: str = "mean",
) -> StageAResult:
    """Tune LoRA + a linear head so each user's prompt predicts their (K,) target distribution.

    `model` is a causal LM (LoRA is attached unless it is already PEFT-wrapped); `prompts[u]` the token ids
    of user u's prompt and `targets[u]` their target. Keeps the epoch with the lowest held-out KL."""
    torch.manual_seed(cfg.seed)
    if not hasattr(model, "peft_config"):
        model = attach_lora(model, lora)
    device = model_device(model)
    hidden = int(model.get_base_model().config.hidden_size)
    head = nn.Linear(hidden, targets.shape[1]).to(device)
    tr, va = split_users(len(prompts), cfg.valid_frac, cfg.seed)
    tr_prompts, va_prompts = [prompts[i] for i in tr], [prompts[i] for i in va]
    tr_targets, va_targets = targets[tr].astype(np.float32), targets[va].astype(np.float32)
    lora_params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": lora_params, "lr": cfg.lr}, {"params": head.parameters(), "lr": cfg.head_lr}],
        weight_decay=cfg.weight_decay,
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    lengths = [len(p) for p in tr_prompts]
    curves: dict[str, list[float]] = {"epoch": [], "train_loss": [], "valid_kl": [], "epoch_wall_s": []}
    steps: list[float] = []
    best, best_epoch, best_state = float("inf"), 0, None
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        head.train()
        start, total = time.perf_counter(), 0.0
        batches = list(length_batches(lengths, cfg.batch_size, gen))
        for idx in tqdm(batches, desc=f"stage-a epoch {epoch}", leave=False, dynamic_ncols=True):
            ids, mask = pad_batch([tr_prompts[i] for i in idx], pad_id, device)
            logits = head(encode(model, ids, mask, pooling))  # (B, K)
            loss = stage_loss(logits, torch.as_tensor(tr_targets[idx], device=device), cfg.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(lora_params + list(head.parameters()), cfg.grad_clip)
            opt.step()
            steps.append(loss.item())
            total += loss.item() * len(idx)
        wall = time.perf_counter() - start
        valid = evaluate_kl(model, head, va_prompts, va_targets, pad_id, pooling, cfg.batch_size)
        curves["epoch"].append(epoch)
        curves["train_loss"].append(total / max(1, len(tr_prompts)))
        curves["valid_kl"].append(valid)
        curves["epoch_wall_s"].append(wall)
        log.info(
            "stage-a epoch %d: train %s %.4f, valid KL %.4f, %.1f s",
            epoch,
            cfg.loss,
            curves["train_loss"][-1],
            valid,
            wall,
        )
        score = valid if np.isfinite(valid) else -epoch  # no held-out users: keep the last epoch
        if score < best:
            best, best_epoch, best_state = score, epoch, _trainable_state(model, head)
    if best_state is not None and best_epoch != cfg.epochs:
        _restore(model, head, best_state)
    model.eval()
    head.eval()
    return StageAResult(model, head, best_epoch, curves, steps, len(tr), len(va), int(sum(lengths)), tr, va)


def merge_lora(model: Any) -> Any:
    """The plain causal LM with the LoRA deltas folded into its weights (faster inference, no adapter)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def save_stage_a(model: Any, head: nn.Linear, out_dir: Path, meta: dict[str, Any] | None = None) -> Path:
    """adapter/ (peft save_pretrained), head.pt (state dict), stage_a.json (meta). Needs the LoRA unmerged."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir / "adapter")
    torch.save(head.state_dict(), out_dir / "head.pt")
    (out_dir / "stage_a.json").write_text(json.dumps(meta or {}, indent=1, default=str))
    return out_dir


def load_stage_a(out_dir: Path, enc: EncoderConfig) -> tuple[Any, nn.Linear, Any]:
    """(PEFT model in eval mode, head, tokenizer) from `save_stage_a`'s folder and the same base model."""
    from peft import PeftModel

    base, tokenizer = load_base(enc)
    model = PeftModel.from_pretrained(base, str(out_dir / "adapter")).eval()
    state = torch.load(out_dir / "head.pt", map_location=model_device(model), weights_only=True)
    head = nn.Linear(state["weight"].shape[1], state["weight"].shape[0]).to(model_device(model))
    head.load_state_dict(state)
    return model, head.eval(), tokenizer
