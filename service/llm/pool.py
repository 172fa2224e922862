"""LLM engines shared between bundle generations.

A bundle swap builds a new generation; its LLM is the engine already running when the new bundle needs the
same one, and a new engine only when it needs another. "The same" is the key below: backend, base model,
dtype, and `recbundle.llm_identity` (the `llm` reference with the checksums of every adapter, soft-prompt
and label file it points at). Adapters and the soft prompt are loaded into the engine at start (PEFT
wraps the model in place; vLLM fixes `max_loras`, the LoRA rank and target modules when the engine starts,
vllm_lora.py), so a bundle with other adapter weights gets an engine of its own, opened while the old one
still serves the requests that hold the old generation; the old engine closes with its last generation.
Retraining only the retrieval model (encoder, index) keeps the engine. See docs/service.md, "Bundle swaps".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from recbundle import Manifest, llm_identity
from service.llm.loader import LoadedLLM, open_llm, resolve_backend, resolve_dtype
from service.metrics.registry import Metrics
from service.settings import Settings

logger = logging.getLogger(__name__)


def engine_key(settings: Settings, manifest: Manifest) -> str:
    """What an engine was built from; two bundles with the same key can share one engine."""
    kind = resolve_backend(settings.llm_backend)
    base = manifest.llm.base or settings.llm_model
    dtype = resolve_dtype(settings.llm_dtype, kind, settings.llm_device, rerank=manifest.llm.rerank is not None)
    return f"{kind}:{base}:{dtype}:{settings.llm_device}:{llm_identity(manifest)}:{settings.explain_adapter}"


def explain_llm_id(settings: Settings, manifest: Manifest) -> str:
    """The explanation cache's name for what writes the texts: base model (the configured default when the
    bundle names none), adapters and soft prompt by checksum, and whether the explain adapter is used."""
    return hashlib.sha256(engine_key(settings, manifest).encode()).hexdigest()[:16]


@dataclass
class _Engine:
    llm: LoadedLLM
    users: int


class LLMPool:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._engines: dict[str, _Engine] = {}

    async def acquire(self, manifest: Manifest, bundle_root: Path) -> tuple[LoadedLLM, str | None]:
        """(the LLM for this bundle, the key to `release` it with; None: nothing to release)."""
        key = engine_key(self.settings, manifest)
        engine = self._engines.get(key)
        if engine is not None:
            engine.users += 1
            logger.info("LLM engine reused for bundle %s", manifest.bundle_id)
            return engine.llm, key
        llm = await open_llm(self.settings, manifest, bundle_root, self.metrics)
        if llm.backend is None:  # disabled or unavailable: nothing to share (a later swap tries again)
            return llm, None
        self._engines[key] = _Engine(llm, 1)
        return llm, key

    async def release(self, key: str | None) -> None:
        engine = self._engines.get(key) if key is not None else None
        if engine is None:
            return
        engine.users -= 1
        if engine.users == 0:
            del self._engines[key]  # type: ignore[arg-type]
            assert engine.llm.backend is not None
            await engine.llm.backend.aclose()
            logger.info("LLM engine closed: no bundle generation uses it")
