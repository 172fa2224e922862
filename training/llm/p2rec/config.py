"""P2Rec's typed config: the `p2rec:` block of a preset (configs/p2rec-*.yaml), parsed here, with the method,
so `training/config.py` never imports a method (it keeps the raw block)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from training.llm.core.model import EncoderConfig, LoraSettings
from training.llm.core.prompts import PromptConfig
from training.llm.p2rec.categories import CategoryConfig
from training.llm.p2rec.stage_a import StageAConfig

if TYPE_CHECKING:
    from training.config import RunConfig


@dataclass
class P2RecConfig:
    base_model: str = ""  # HF causal-LM folder; "" = converted SmolLM2-135M-Instruct; "random-tiny" = CI only
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"  # "auto" = cuda when available
    k: int = 32  # latent categories (ours: the paper's K is not available offline; see sweep_ks)
    spherical: bool = False
    sweep_ks: list[int] = field(default_factory=lambda: [8, 16, 32, 64])  # reported, not used to pick K
    # the stage (a) target (categories.py): what the LLM learns to reconstruct and stage (b) then encodes
    target: Literal["counts", "shown", "recency", "teacher"] = "counts"
    # also tune stage (a) on these targets, the same way, to compare their held-out fit (the report's
    # target table); [] = only `target`
    target_variants: list[str] = field(default_factory=list)
    recency_half_life: float = 5.0  # items; the "recency" target's weight halves every half_life items
    teacher_temperature: float = 1.0
    teacher_mask_history: bool = True  # drop already-seen items from the teacher's distribution (ours)
    loss: Literal["kl", "mse"] = "kl"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    max_history_items: int = 20
    max_prompt_tokens: int = 384
    id_only: bool = False
    use_chat_template: bool = True
    epochs: int = 2
    batch_size: int = 8
    lr: float = 2e-4
    head_lr: float = 1e-3
    valid_frac: float = 0.1
    pooling: Literal["mean", "last"] = "mean"
    aug_dim: int = 64  # = the SR model's dim, so SASRecInit can take it directly
    infer_batch_size: int = 32
    merge_for_inference: bool = True  # fold LoRA into the weights before stage (b) (same output, faster)
    sft_timing_examples: int = 32  # examples timed per side for the efficiency ratio; 0 skips it
    seed: int = 0
    max_users: int | None = None  # subsample of users for stage (a) (quick presets); None = all
    # > 0: the chain also runs on a cold-start split (this share of items held out of training, recovered
    # through their text) and reports the `cold` regime from it (training/data/split.py)
    cold_item_frac: float = 0.0
    # users the target variants are compared on: stage (a)'s held-out users plus users outside its
    # subsample, at most this many (forward passes only)
    target_eval_users: int = 400
    report_note: str = ""  # printed at the top of the report, e.g. how a CPU run was reduced

    def __post_init__(self) -> None:
        allowed = {"counts", "shown", "recency", "teacher"}
        bad = sorted({self.target, *self.target_variants} - allowed)
        if bad:
            raise ValueError(f"p2rec target(s) {bad} unknown; choose from {sorted(allowed)}")

    def variants(self) -> list[str]:
        """Every stage (a) target to tune: `target` first, then the other `target_variants`."""
        return [self.target, *[v for v in self.target_variants if v != self.target]]

    def encoder(self) -> EncoderConfig:
        return EncoderConfig(self.base_model, self.dtype, self.pooling, self.device)

    def lora(self) -> LoraSettings:
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, list(self.lora_targets))

    def prompt(self) -> PromptConfig:
        return PromptConfig(
            self.max_history_items,
            self.max_prompt_tokens,
            self.id_only,
            use_chat_template=self.use_chat_template,
        )

    def stage_a(self) -> StageAConfig:
        return StageAConfig(
            self.loss,
            self.epochs,
            self.batch_size,
            self.lr,
            self.head_lr,
            valid_frac=self.valid_frac,
            seed=self.seed,
        )

    def categories(self) -> CategoryConfig:
        return CategoryConfig(self.k, self.spherical, seed=self.seed)



def p2rec_config(cfg: RunConfig) -> P2RecConfig:
    """The preset's `p2rec:` block as a P2RecConfig; a clear error for a preset without one."""
    from training.config import method_config

    return method_config(cfg, "p2rec", P2RecConfig, "use one of the p2rec-* presets")
