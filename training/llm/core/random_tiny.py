"""A tiny RANDOMLY INITIALISED Llama with the real SmolLM2 tokenizer: a test and CI device, not a model.

`base_model: "random-tiny"` in a P2Rec preset (configs/p2rec-tiny.yaml) runs every LLM stage (LoRA tuning,
the SFT timing, item encoding) end to end in seconds on a CPU, with the same tokenizer, chat template and
prompts as SmolLM2-135M. Its states carry no language knowledge, so numbers from it test the plumbing and
say nothing about P2Rec. The model is built once per config (seeded, so every machine gets the same
weights) and saved next to the converted SmolLM2 folder.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RANDOM_TINY = "random-tiny"  # the `base_model` marker that selects this model


@dataclass(frozen=True)
class TinyLlamaSpec:
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024
    seed: int = 0


def _tokenizer_dir() -> Path:
    from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2

    if (DEFAULT_MODEL_DIR / "tokenizer.json").is_file():
        return DEFAULT_MODEL_DIR
    return convert_smollm2()  # the tokenizer comes with the converted folder


def random_tiny_dir(spec: TinyLlamaSpec | None = None, cache_root: Path | None = None) -> Path:
    """Folder of the seeded tiny Llama for `spec` (built and saved on first use)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from recbundle.base_model import DEFAULT_MODEL_DIR, is_model_dir
    from training.config import stable_hash

    spec = spec or TinyLlamaSpec()
    tok = AutoTokenizer.from_pretrained(_tokenizer_dir())
    key = stable_hash(asdict(spec) | {"vocab": len(tok)})
    out = (cache_root or DEFAULT_MODEL_DIR.parent) / f"{RANDOM_TINY}-{key}"
    if is_model_dir(out):
        return out
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    with torch.random.fork_rng():  # seeded without disturbing the caller's random state
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(cfg)
    tmp = out.with_name(f"{out.name}.partial")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if not is_model_dir(out):  # another process may have finished first
        tmp.rename(out)
    log.info("random tiny Llama (%s, vocab %d) saved to %s", spec, len(tok), out)
    return out
