"""TSLRec/P2Rec (arXiv 2406.00333): an LLM tuned once per USER to reconstruct the user's latent-category
preferences (stage a), then used to embed every item as a one-item virtual user (stage b) for an SR model.

Entry point: `run_p2rec(P2RecConfig(...), dataset, split, teacher_item_embeddings, out_root)`. Each stage is
also usable on its own (categories, prompts, encoder, stage_a, stage_b, sft_baseline, cache).
"""

from training.llm.cache import cached, fingerprint
from training.llm.categories import (
    Categories,
    CategoryConfig,
    balance,
    compare_targets,
    counts_targets,
    fit_categories,
    sweep_k,
    teacher_targets,
)
from training.llm.encoder import (
    EncoderConfig,
    LoraSettings,
    attach_lora,
    build_lora_config,
    encode,
    load_base,
)
from training.llm.p2rec import P2RecConfig, P2RecResult, run_p2rec
from training.llm.prompts import PromptConfig, catalogue_texts, item_text, user_prompt_ids, virtual_user_ids
from training.llm.sft_baseline import SFTTiming, instance_level_sft_epoch_time
from training.llm.stage_a import (
    StageAConfig,
    StageAResult,
    load_stage_a,
    merge_lora,
    save_stage_a,
    train_stage_a,
)
from training.llm.stage_b import PCA, augmented_table, encode_texts, fit_pca, item_embeddings

__all__ = [
    "PCA",
    "Categories",
    "CategoryConfig",
    "EncoderConfig",
    "LoraSettings",
    "P2RecConfig",
    "P2RecResult",
    "PromptConfig",
    "SFTTiming",
    "StageAConfig",
    "StageAResult",
    "attach_lora",
    "augmented_table",
    "balance",
    "build_lora_config",
    "cached",
    "catalogue_texts",
    "compare_targets",
    "counts_targets",
    "encode",
    "encode_texts",
    "fingerprint",
    "fit_categories",
    "fit_pca",
    "instance_level_sft_epoch_time",
    "item_embeddings",
    "item_text",
    "load_base",
    "load_stage_a",
    "merge_lora",
    "run_p2rec",
    "save_stage_a",
    "sweep_k",
    "teacher_targets",
    "train_stage_a",
    "user_prompt_ids",
    "virtual_user_ids",
]
