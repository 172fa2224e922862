"""LLM engines shared between bundle generations.

A bundle swap builds a new generation; its LLM is the engine already running whenever the new bundle uses the
same base model (same backend, model, dtype, device): a model is loaded once per process, not per swap.
- Same LLM files too (adapters, soft prompt, labels by checksum: `recbundle.llm_identity`): the very same
  backend object is reused.
- Other adapters or soft prompt, transformers backend: `TransformersBackend.bind` loads the new bundle's
  adapters into the running model beside the old ones (own names, on the model's worker thread) with its
  own soft prompt; the old generation's adapters are unloaded when it closes.
- Otherwise a new engine is opened beside the old one (which closes with its last generation): another
  base model; the vLLM backend (its LoRA slots, rank and target modules are fixed when the engine starts,
  vllm_lora.py, so new adapters are not bound into it yet); a bundle that brings the first adapters to a
  model loaded without any (PEFT would wrap the shared model in place).
See docs/service.md, "Bundle swaps".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbundle import Manifest, llm_identity
from service.llm.loader import LoadedLLM, bundle_adapters, open_llm, resolve_backend, resolve_dtype
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
    base: str  # base_key: engines with the same one can be bound to another bundle's adapters


def base_key(settings: Settings, manifest: Manifest) -> str:
    kind = resolve_backend(settings.llm_backend)
    base = manifest.llm.base or settings.llm_model
    dtype = resolve_dtype(settings.llm_dtype, kind, settings.llm_device, rerank=manifest.llm.rerank is not None)
    return f"{kind}:{base}:{dtype}:{settings.llm_device}"


class LLMPool:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._engines: dict[str, _Engine] = {}
        self.opened = 0  # engines started (a bound backend does not count): for tests and the log

    async def acquire(self, manifest: Manifest, bundle_root: Path) -> tuple[LoadedLLM, str | None]:
        """(the LLM for this bundle, the key to `release` it with; None: nothing to release)."""
        key = engine_key(self.settings, manifest)
        engine = self._engines.get(key)
        if engine is not None:
            engine.users += 1
            logger.info("LLM reused for bundle %s", manifest.bundle_id)
            return engine.llm, key
        base = base_key(self.settings, manifest)
        llm = await self._bind(manifest, bundle_root, base) or await self._open(manifest, bundle_root)
        if llm.backend is None:  # disabled or unavailable: nothing to share (a later swap tries again)
            return llm, None
        self._engines[key] = _Engine(llm, 1, base)
        return llm, key

    async def _bind(self, manifest: Manifest, bundle_root: Path, base: str) -> LoadedLLM | None:
        """The running model of the same base, bound to this bundle's adapters; None when there is none."""
        adapters = bundle_adapters(manifest, bundle_root, explain=self.settings.explain_adapter == "bundle")
        soft = bundle_root / manifest.llm.soft_prompt if manifest.llm.soft_prompt else None
        for engine in self._engines.values():
            backend: Any = engine.llm.backend  # TransformersBackend has `bind` (not imported: transformers is heavy)
            if engine.base == base and hasattr(backend, "bind") and backend.can_bind(adapters):
                bound = await backend.bind(adapters, soft)
                logger.info("LLM model reused for bundle %s with its own adapters", manifest.bundle_id)
                return LoadedLLM(bound, "ok", engine.llm.detail)
        return None

    async def _open(self, manifest: Manifest, bundle_root: Path) -> LoadedLLM:
        llm = await open_llm(self.settings, manifest, bundle_root, self.metrics)
        self.opened += llm.backend is not None
        return llm

    async def release(self, key: str | None) -> None:
        engine = self._engines.get(key) if key is not None else None
        if engine is None:
            return
        engine.users -= 1
        if engine.users == 0:
            del self._engines[key]  # type: ignore[arg-type]
            assert engine.llm.backend is not None
            await engine.llm.backend.aclose()  # a bound backend unloads its adapters; the last one the model
            logger.info("LLM backend closed: no bundle generation uses it")
