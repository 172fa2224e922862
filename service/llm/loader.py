"""Pick and start the LLM backend from settings and the bundle's `llm` reference.

`llm_backend`: `vllm`, `transformers`, `openai` (a remote vLLM server, openai_backend.py; only ever
chosen explicitly), `none` (rankings only) or `auto` (vLLM when importable, else transformers). A backend named explicitly that cannot start stops the service with an error that says
what to change; under `auto` (or with `llm_required=false`) a failure leaves the ranking path up, and
explanations answer "unavailable" while /readyz reports why.

The engine gets every adapter the bundle uses: "explain" (explanations) and the one its rerank spec names
(`manifest.llm.rerank.adapter`), both by their bundle names."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from recbundle import Manifest
from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
from service.llm.base import EXPLAIN_ADAPTER, LLMBackend
from service.metrics.registry import Metrics
from service.settings import Settings

logger = logging.getLogger(__name__)


class LLMStartupError(RuntimeError):
    """The configured LLM backend could not start."""


@dataclass(frozen=True)
class LoadedLLM:
    backend: LLMBackend | None
    status: Literal["ok", "disabled", "unavailable"]
    detail: str | None = None


def resolve_backend(kind: str) -> str:
    if kind == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    return kind


def resolve_dtype(dtype: str, backend: str, device: str, rerank: bool = False) -> str:
    """`auto`: fp32 when the bundle reranks: the offline ranker scores in fp32, and bf16 label scores of
    SmolLM2 (LoRA + soft prompt) were up to 0.19 off (mean 0.045) and reordered all 4 prompts tried, so the
    served order would not be the evaluated one.
    Otherwise bf16 for transformers (1.5x faster decoding than fp32 on these CPUs) and on GPUs; fp32 for
    vLLM on a CPU (1.6-3.7x faster than its bf16 path on a CPU without AVX-512; docs/service.md)."""
    if dtype != "auto":
        return dtype
    # openai: the server's dtype, which its launcher (remote_server.py) picks by this same rule for the vLLM
    # engine on `device`
    vllm = backend in ("vllm", "openai")
    return "float32" if rerank or (vllm and device == "cpu") else "bfloat16"


def bundle_adapters(manifest: Manifest, bundle_root: Path, explain: bool = True) -> dict[str, Path]:
    """Adapter folders the service uses, by bundle name: "explain" (unless `explain` is False: explanations
    then use the base weights), and the rerank spec's adapter (a name the bundle does not list is left out;
    the reranker reports it)."""
    spec = manifest.llm.rerank
    names = [*([EXPLAIN_ADAPTER] if explain else []), *([spec.adapter] if spec is not None and spec.adapter else [])]
    return {n: bundle_root / manifest.llm.lora_adapters[n] for n in names if n in manifest.llm.lora_adapters}


async def open_llm(settings: Settings, manifest: Manifest, bundle_root: Path, metrics: Metrics) -> LoadedLLM:
    kind = resolve_backend(settings.llm_backend)
    if kind == "none":
        return LoadedLLM(None, "disabled", "llm_backend=none")
    required = settings.llm_required if settings.llm_required is not None else settings.llm_backend != "auto"
    base = manifest.llm.base or settings.llm_model
    adapters = bundle_adapters(manifest, bundle_root, explain=settings.explain_adapter == "bundle")
    soft = bundle_root / manifest.llm.soft_prompt if manifest.llm.soft_prompt else None
    dtype = resolve_dtype(settings.llm_dtype, kind, settings.llm_device, rerank=manifest.llm.rerank is not None)
    local = Path(base).expanduser()
    try:
        if local == DEFAULT_MODEL_DIR:
            await asyncio.to_thread(convert_smollm2, DEFAULT_MODEL_DIR)  # once, from PyPI's GGUF
        backend: LLMBackend
        if kind == "vllm":
            from service.llm.vllm_backend import VLLMBackend

            backend = VLLMBackend.start(  # on the loop: the engine binds its output handler to it
                str(local) if local.exists() else base,
                device=settings.llm_device, dtype=dtype, adapters=adapters, soft_prompt=soft,
                max_model_len=settings.vllm_max_model_len, kv_cache_gb=settings.vllm_kv_cache_gb,
                gpu_memory_fraction=settings.vllm_gpu_memory_fraction, max_num_seqs=settings.vllm_max_num_seqs,
            )  # fmt: skip
            metrics.expose_vllm()
        elif kind == "openai":
            backend = await _connect_remote(settings, manifest, str(local) if local.exists() else base, adapters, soft, metrics)
        else:
            from service.llm.transformers_backend import TransformersBackend

            backend = await asyncio.to_thread(
                TransformersBackend.load, base, settings.llm_device, dtype, None, soft, adapters
            )
    except Exception as e:
        message = f"LLM backend {kind!r} could not start with {base}: {type(e).__name__}: {e}"
        fix = "the server (SEQREC_LLM_URL), " if kind == "openai" else ""
        if required:
            raise LLMStartupError(
                f"{message}. Fix {fix}the model (SEQREC_LLM_MODEL) or the backend, serve rankings only with "
                "SEQREC_LLM_BACKEND=none, or start without explanations with SEQREC_LLM_REQUIRED=false"
            ) from e
        logger.exception("%s; explanations are unavailable", message)
        return LoadedLLM(None, "unavailable", message)
    if settings.fault_llm_delay_ms is not None:  # the fault campaign's stalled engine (service/llm/faults.py)
        from service.llm.faults import DelayedBackend

        logger.warning("FAULT INJECTION: every LLM call waits %d ms first", settings.fault_llm_delay_ms)
        backend = DelayedBackend(backend, settings.fault_llm_delay_ms / 1000)
    where = f" at {settings.llm_url}" if kind == "openai" else ""
    return LoadedLLM(backend, "ok", f"{kind} ({dtype}): {base}{where}")


async def _connect_remote(
    settings: Settings, manifest: Manifest, model: str, adapters: dict[str, Path], soft: Path | None, metrics: Metrics
) -> LLMBackend:
    from service.llm.openai_backend import OpenAIBackend
    from service.llm.remote_server import served_names

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
    return await OpenAIBackend.connect(
        settings.llm_url, model, served_names(manifest, adapters, model), api_key=key, soft_prompt=soft,
        connect_timeout_s=settings.llm_connect_timeout_s, on_error=lambda r: metrics.llm_remote_errors.labels(r).inc(),
    )  # fmt: skip
