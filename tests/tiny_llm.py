"""A randomly initialised 2-layer Llama with the real SmolLM2 tokenizer (and chat template), saved as an HF
folder: what most LLM tests use instead of the real 135M model."""

from __future__ import annotations

from pathlib import Path


def build_tiny_llama(out: Path, hidden: int = 64, tie_embeddings: bool = False, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from recbundle.base_model import convert_smollm2

    tokenizer = AutoTokenizer.from_pretrained(convert_smollm2())  # converts once, then a cached folder
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
