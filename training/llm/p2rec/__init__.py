"""TSLRec/P2Rec (arXiv 2406.00333): an LLM tuned once per USER to reconstruct the user's latent-category
preferences (stage a), then used to embed every item as a one-item virtual user (stage b) for an SR model.

Entry point: `run_p2rec(P2RecConfig(...), dataset, split, teacher_item_embeddings, out_root)`; the whole chain
with the SR variants and the bundle is `chain.run_chain` (`python -m training p2rec`).
"""

from training.llm.p2rec.config import P2RecConfig, p2rec_config
from training.llm.p2rec.pipeline import P2RecResult, run_p2rec
from training.llm.p2rec.stage_a import load_stage_a, merge_lora
from training.llm.p2rec.stage_b import PCA, encode_texts

__all__ = [
    "PCA",
    "P2RecConfig",
    "P2RecResult",
    "encode_texts",
    "load_stage_a",
    "merge_lora",
    "p2rec_config",
    "run_p2rec",
]
