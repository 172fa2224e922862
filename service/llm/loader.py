"""Pick and load the LLM backend from settings and the bundle's `llm` reference. A load failure does not
stop the service: recommendations go on and explanations answer "unavailable"."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from recbundle import Manifest
from service.llm.base import LLMBackend

logger = logging.getLogger(__name__)

EXPLAIN_ADAPTER = "explain"  # name of the LoRA adapter in manifest.llm.lora_adapters used for explanations


@dataclass(frozen=True)
class LoadedLLM:
    backend: LLMBackend | None
    status: Literal["ok", "disabled", "unavailable"]
    detail: str | None = None


def load_llm(
    kind: str, model: str, device: str, dtype: str, manifest: Manifest, bundle_root: Path
) -> LoadedLLM:
    if kind == "none":
        return LoadedLLM(None, "disabled", "llm_backend=none")
    base = manifest.llm.base or model
    adapter = manifest.llm.lora_adapters.get(EXPLAIN_ADAPTER)
    try:
        from service.llm.transformers_backend import TransformersBackend

        backend = TransformersBackend.load(base, device, dtype, bundle_root / adapter if adapter else None)
    except Exception as e:  # any failure here must leave the ranking path up
        logger.exception("LLM %s failed to load; explanations are unavailable", base)
        return LoadedLLM(None, "unavailable", f"{base} failed to load: {type(e).__name__}: {e}")
    return LoadedLLM(backend, "ok", base)
