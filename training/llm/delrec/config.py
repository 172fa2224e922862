"""DELRec's typed config: the `delrec:` block of a preset (configs/delrec-*.yaml), parsed with the method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from recbundle.rerank import DEFAULT_LABELS, RerankSpec
from training.llm.core.model import EncoderConfig, LoraSettings
from training.llm.core.tuning import TuneConfig

if TYPE_CHECKING:
    from training.config import RunConfig


@dataclass
class DelRecConfig:
    base_model: str = ""  # HF causal-LM folder; "" = converted SmolLM2-135M-Instruct; "random-tiny" = CI only
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"
    teacher_preset: str | None = None  # use this preset's trained teacher (same data) instead of training one
    # prompt (recbundle.rerank.RerankSpec): the served prompt is stage 2's
    n_candidates: int = 20
    history_items: int = 10
    max_title_chars: int = 60
    # stage 1: soft prompt distillation (LLM frozen)
    n_soft_tokens: int = 100
    rps_teacher_k: int = 10  # RPS candidates: the teacher's top-k + (n_candidates - k) random items
    rps_hints: int = 3  # the teacher's predictions 2..1+hints shown as hints (DELRec's RPS template)
    stage1_examples_per_user: int = 2  # per task
    stage1_epochs: int = 1
    stage1_lr: float = 1e-3
    stage1_weighting: Literal["fixed", "gradnorm"] = "gradnorm"
    stage1_max_steps: int | None = None
    # stage 2: LoRA ranking fine-tune (soft prompt frozen)
    stage2_examples_per_user: int = 4
    stage2_epochs: int = 1
    stage2_lr: float = 5e-4
    stage2_max_steps: int | None = None
    lora_kind: Literal["lora", "adalora"] = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    batch_size: int = 4
    # users: training examples come from training positions of `max_users` users (None = all); evaluation
    # on `eval_users` test users (None = all), the same users for every row of the report
    max_users: int | None = None
    valid_users: int = 64  # validation users for epoch selection and the blend's lambda
    eval_users: int | None = None
    title_agreement_users: int = 16  # label scores vs full title log-likelihood on this many users
    zero_shot: bool = True  # the zero-shot row (same prompt, no soft prompt, no LoRA)
    ablation: bool = True  # the stage-2-without-soft-prompt row (one more LoRA fine-tune per seed)
    blend_lambdas: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    eval_batch_size: int = 8

    def encoder(self) -> EncoderConfig:
        return EncoderConfig(self.base_model, self.dtype, "last", self.device)

    def lora(self) -> LoraSettings:
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, list(self.lora_targets))

    def spec(self, blend_lambda: float = 1.0, soft_prompt: bool = True) -> RerankSpec:
        from recbundle.rerank import RankPrompt

        return RerankSpec(
            n_candidates=self.n_candidates,
            history_items=self.history_items,
            labels=DEFAULT_LABELS[: self.n_candidates],
            prompt=RankPrompt(max_title_chars=self.max_title_chars),
            soft_prompt=soft_prompt,
            blend_lambda=blend_lambda,
        )

    def stage1(self, seed: int) -> TuneConfig:
        return TuneConfig(self.stage1_epochs, self.batch_size, self.stage1_lr, weighting=self.stage1_weighting,
                          max_steps=self.stage1_max_steps, seed=seed)

    def stage2(self, seed: int) -> TuneConfig:
        return TuneConfig(self.stage2_epochs, self.batch_size, self.stage2_lr, max_steps=self.stage2_max_steps,
                          seed=seed)


def delrec_config(cfg: RunConfig) -> DelRecConfig:
    """The preset's `delrec:` block as a DelRecConfig; a clear error for a preset without one."""
    from training.config import method_config

    return method_config(cfg, "delrec", DelRecConfig, "use one of the delrec-* presets")
