"""ReLRec's typed config: the `relrec:` block of a preset (configs/relrec-*.yaml), parsed with the method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from recbundle.rerank import DEFAULT_LABELS, RankPrompt, RerankSpec
from training.llm.core.model import EncoderConfig, LoraSettings
from training.llm.core.tuning import TuneConfig
from training.llm.relrec.labels import Extractor, LabelConfig

if TYPE_CHECKING:
    from training.config import RunConfig

TASKS = ("rec", "user", "item")


@dataclass
class RelRecConfig:
    base_model: str = ""  # HF causal-LM folder; "" = converted SmolLM2-135M-Instruct; "random-tiny" = CI only
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"
    teacher_preset: str | None = None  # SASRec row + bundle encoder from this preset's teacher (same data)
    # pseudo-labels (labels.py): training-period reviews, metadata where a dataset has none
    label_extractor: Extractor = "yake"
    label_phrases: int = 4
    label_source: Literal["auto", "reviews", "metadata"] = "auto"
    # prompts: the ranking prompt is the served one (recbundle.rerank); the label prompts reuse its titles
    n_candidates: int = 20
    history_items: int = 10
    max_title_chars: int = 60
    max_label_tokens: int = 48  # a label is a few phrases; longer ones are cut
    # multi-task LoRA: loss = rec + user_weight * user-label + item_weight * item-label ("fixed"), or
    # DELRec's dynamic weighting ("gradnorm", training/llm/core/tuning.py)
    weighting: Literal["fixed", "gradnorm"] = "fixed"
    user_weight: float = 1.0
    item_weight: float = 1.0
    examples_per_user: int = 4  # next-item questions per training user (training positions only)
    max_label_items: int | None = None  # item-label questions (None = every labelled item)
    epochs: int = 1
    lr: float = 5e-4
    max_steps: int | None = None
    batch_size: int = 4
    lora_kind: Literal["lora", "adalora"] = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    # users: training questions from `max_users` users (None = all); cand20 test on `eval_users`
    max_users: int | None = None
    valid_users: int = 64
    eval_users: int | None = None
    eval_batch_size: int = 8
    zero_shot: bool = True  # the untuned LLM's cand20 row
    ablation: bool = True  # the plain next-item fine-tune (no reconstruction), same rec batches
    # language keeping (perplexity.py): held-out reviews, and the fixed explanation prompts
    perplexity_reviews: Literal["test", "valid_test"] = "test"
    perplexity_docs: int | None = 200  # a seeded sample of held-out reviews (None = all)
    perplexity_max_tokens: int = 256  # per review

    def encoder(self) -> EncoderConfig:
        return EncoderConfig(self.base_model, self.dtype, "last", self.device)

    def lora(self) -> LoraSettings:
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, list(self.lora_targets))

    def labels(self) -> LabelConfig:
        return LabelConfig(extractor=self.label_extractor, n_phrases=self.label_phrases,
                           source=self.label_source)

    def spec(self) -> RerankSpec:
        """The serving prompt, without a soft prompt (ReLRec tunes LoRA only)."""
        return RerankSpec(n_candidates=self.n_candidates, history_items=self.history_items,
                          labels=DEFAULT_LABELS[: self.n_candidates],
                          prompt=RankPrompt(max_title_chars=self.max_title_chars), soft_prompt=False)

    def weights(self) -> dict[str, float]:
        return {"rec": 1.0, "user": self.user_weight, "item": self.item_weight}

    def tune(self, seed: int) -> TuneConfig:
        # an epoch is one pass over the next-item questions, so ReLRec and its ablation take the same steps
        return TuneConfig(self.epochs, self.batch_size, self.lr, weighting=self.weighting,
                          task_weights=self.weights(), max_steps=self.max_steps, steps_from="rec", seed=seed)


def relrec_config(cfg: RunConfig) -> RelRecConfig:
    """The preset's `relrec:` block as a RelRecConfig; a clear error for a preset without one."""
    from training.config import method_config

    return method_config(cfg, "relrec", RelRecConfig, "use one of the relrec-* presets")
