"""The LLM as a text encoder: load a causal LM from a Hugging Face folder, attach LoRA, pool the decoder's
hidden states.

Hidden states come from the decoder stack (`LlamaForCausalLM.model`), not from the causal-LM forward,
which would also compute vocabulary-sized logits at every position (FIELD-NOTES: SmolLM2's 49,152-way head
is most of the cost of a forward pass on these CPUs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from training.device import resolve_device

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class EncoderConfig:
    # a Hugging Face causal-LM folder; "" = recbundle's converted SmolLM2-135M-Instruct; "random-tiny" = a
    # seeded, randomly initialised 2-layer Llama with SmolLM2's tokenizer, for tests and CI only (random_tiny.py)
    base_model: str = ""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # fp32: bf16 LoRA training on CPU is lossy
    pooling: Literal["mean", "last"] = "mean"  # mean over non-pad tokens, or the last real token
    device: str = "auto"  # "auto" = cuda when available, else cpu


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


def model_dir(cfg: EncoderConfig) -> str:
    from training.llm.core.random_tiny import RANDOM_TINY, random_tiny_dir

    if cfg.base_model == RANDOM_TINY:
        return str(random_tiny_dir())
    if cfg.base_model:
        return cfg.base_model
    from recbundle.base_model import convert_smollm2

    return str(convert_smollm2())


def build_lora_config(s: LoraSettings) -> Any:
    """A peft LoraConfig from our settings (pure; no model needed)."""
    from peft import LoraConfig

    return LoraConfig(
        r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(s.target_modules), bias="none"
    )


def load_tokenizer(cfg: EncoderConfig) -> Any:
    """The base model's tokenizer alone, with a pad token (no weights loaded)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir(cfg))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(cfg: EncoderConfig) -> tuple[Any, Any]:
    """(causal LM on the configured device and dtype, tokenizer with a pad token)."""
    from transformers import AutoModelForCausalLM

    path = model_dir(cfg)
    tokenizer = load_tokenizer(cfg)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[cfg.dtype])
    model.config.use_cache = False
    return model.to(resolve_device(cfg.device)), tokenizer


def attach_lora(model: Any, s: LoraSettings) -> Any:
    from peft import get_peft_model

    peft_model = get_peft_model(model, build_lora_config(s))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    log.info("LoRA r=%d on %s: %d trainable parameters", s.r, s.target_modules, trainable)
    return peft_model


def decoder_of(model: Any) -> Any:
    """The decoder stack of a causal LM, PEFT-wrapped or not (LoRA layers are injected in place)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder() if hasattr(base, "get_decoder") else base.model


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) ids and attention mask at the batch's own longest length (dynamic padding).
    Right padding keeps position ids 0..n for real tokens without relying on mask-derived positions."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[b, : len(s)] = 1
    return ids.to(device), mask.to(device)


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, T, H) hidden, (B, T) mask -> (B, H) float32."""
    hidden = hidden.float()
    if mode == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    if mode == "last":
        last = mask.sum(1) - 1  # right padding: the last real token
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    raise ValueError(f"pooling must be 'mean' or 'last', not {mode!r}")


def encode(model: Any, ids: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pooled decoder output (B, H) for one padded batch; gradients flow when enabled."""
    out = decoder_of(model)(input_ids=ids, attention_mask=mask, use_cache=False)
    return pool(out.last_hidden_state, mask, pooling)


def length_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator | None, bucket_batches: int = 8
) -> Iterator[list[int]]:
    """Index batches that group similar lengths: shuffle (when a generator is given), cut into buckets of
    `bucket_batches` batches, sort each bucket by length, then shuffle the batch order. Without a generator
    the order is a plain length sort (for inference)."""
    n = len(lengths)
    if generator is None:
        order = sorted(range(n), key=lambda i: lengths[i])
        yield from (order[i : i + batch_size] for i in range(0, n, batch_size))
        return
    perm = torch.randperm(n, generator=generator).tolist()
    batches: list[list[int]] = []
    bucket = batch_size * bucket_batches
    for start in range(0, n, bucket):
        chunk = sorted(perm[start : start + bucket], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    for j in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[j]
