"""Real-model test material: a LoRA adapter with random non-zero weights, a soft-prompt tensor, and the
brute-force label log-likelihoods that label scoring must reproduce."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import torch


def make_lora_adapter(model_dir: Path, out: Path, seed: int = 0) -> Path:
    """A PEFT LoRA adapter (r=8 on q/k/v/o) whose weights are random and non-zero, so it changes outputs
    the way a trained one does."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.02 if "lora_B" in name else 0.05)
    peft_model.save_pretrained(out)
    return out


def make_soft_prompt(path: Path, n_tokens: int = 8, hidden: int = 576, seed: int = 0) -> Path:
    """(n_tokens, hidden) vectors at about the scale of SmolLM2's token embeddings."""
    np.save(path, (np.random.default_rng(seed).standard_normal((n_tokens, hidden)) * 0.14).astype(np.float32))
    return path


def label_logprobs(model_dir: Path, adapter: Path | None, soft: Path | None, text: str, labels: list[int]) -> list[float]:
    """Brute-force label log-likelihoods: the plain model in fp32, inputs_embeds = [soft; token embeddings],
    full softmax at the last position, restricted to the labels and renormalised over them."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        x = model.get_input_embeddings()(torch.tensor(ids))
        if soft is not None:
            x = torch.cat([torch.from_numpy(np.load(soft)), x])
        logp = model.eval()(inputs_embeds=x[None]).logits[0, -1].float().log_softmax(-1)
    chosen = logp[labels]
    return (chosen - chosen.logsumexp(-1)).tolist()


def build_real_llm_bundle(tmp: Path, spec: Any) -> Path:
    """A fixture bundle for the real SmolLM2 at `tmp/bundle`: an "explain" and a "rerank" LoRA adapter (random,
    seeds 0 and 1), a soft prompt (8 vectors) and the rerank spec `spec`. Adapters and soft prompt are also
    left at `tmp/lora`, `tmp/rerank` and `tmp/soft.npy` for reference computations."""
    from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
    from tests.service.bundle_factory import build_bundle

    convert_smollm2(DEFAULT_MODEL_DIR)
    bundle = tmp / "bundle"
    if not bundle.exists():
        explain = make_lora_adapter(DEFAULT_MODEL_DIR, tmp / "lora")
        rerank = make_lora_adapter(DEFAULT_MODEL_DIR, tmp / "rerank", seed=1)
        soft = np.load(make_soft_prompt(tmp / "soft.npy"))
        build_bundle(bundle, lora_adapter=explain, soft_prompt=soft, rerank=spec, rerank_adapter=rerank)
    return bundle


class OnItsLoop:
    """A backend and the event loop it was opened on: an in-process engine binds its output handler to that
    loop, an HTTP client its connection pool. Subclasses set `self.backend` in `__init__`."""

    backend: Any

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.backend.aclose())
        self.loop.close()
