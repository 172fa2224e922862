"""The service's one settings class. Every field reads the environment variable `SEQREC_<FIELD>`.

Built inside `create_app()` (or on the first startup of the module-level app), never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from recbundle.base_model import DEFAULT_MODEL_DIR
from service.auth.keys import ApiKey


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEQREC_", env_file=None, extra="ignore")

    # bundle
    bundle_dir: Path = Field(
        default=Path("bundles/current"), description="bundle directory written by training export"
    )
    # 5 s: an export repoints bundles/current once per training run; polling a symlink costs a readlink
    bundle_watch_s: float = Field(
        default=5.0, ge=0, description="re-resolve bundle_dir this often and swap when its target changes; 0 = off"
    )
    bundle_retire_grace_s: float = Field(
        default=300.0, gt=0,
        description="after a swap, the old bundle is closed when its last request ends, or after this anyway",
    )  # fmt: skip

    # sessions; redis_url None keeps sessions in this process's memory: for development and tests only
    # (lost on restart, not shared between workers)
    redis_url: str | None = Field(
        default=None, description="redis://host:port/db; None = in-process store (not for production)"
    )
    redis_prefix: str = "seqrec:"
    redis_timeout_s: float = Field(default=0.5, gt=0)
    session_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    session_max_len: int = Field(
        default=200, ge=1, description="events kept per session (older ones are trimmed)"
    )

    # recommendation
    max_history: int = Field(default=200, ge=1, description="most events accepted inline in one request")
    retrieval_fanout: int = Field(
        default=2, ge=1, description="FAISS fetches k * fanout + len(seen) candidates"
    )
    search_workers: int = Field(default=4, ge=1, description="threads running encode+search concurrently")
    search_threads: int = Field(default=1, ge=1, description="OpenMP threads inside one FAISS search")
    # micro-batching of concurrent encode+search calls: whatever is queued when the worker frees up runs as
    # one batch (3x req/s at 32 concurrent requests, no cost at 1; docs/service.md); 1 = off. A window > 0
    # also waits for more requests, which measured slower here.
    # 16 x 3 on CPUs: 16 rows is where the traced SASRec costs least per row (76 us against 80 at 32 and 98 at
    # 8, service/index/fast_encoder.py), and at 32 connections three batches of up to 16 gave 2,490-2,750
    # req/s against 2,420-2,490 for two of up to 64 (three alternating rounds, docs/service.md). On a GPU a
    # batch of 64 costs about what one row does: the gpu overlay sets 64 x 2.
    batch_max_size: int = Field(
        default=16, ge=1, description="most histories per encode+search batch; 1 = off"
    )
    batch_window_ms: float = Field(default=0.0, ge=0, description="extra wait for a batch to fill")
    batch_inflight: int = Field(
        default=3, ge=1, description="batches encoded at once (the loop answers one while the next runs)"
    )
    # The encoder's worker threads hand the GIL back to the event loop for each traced call and each FAISS
    # search, and wait to get it again; a thread waiting for the GIL asks for it only after the switch
    # interval (CPython's default 5 ms). Beside a GIL-holding thread one batch's trace took 13.8 ms instead
    # of 1.8 (2.5 at 0.2 ms). Under load, paired rounds of servers side by side against 0.5 ms (docs/service.md,
    # "One trace for every batch size"): 0.1 ms +16 % and +17 % req/s in two runs, -3 % in a third; 0.05 ms
    # about the same; 0.02 ms no gain.
    gil_switch_interval_ms: float = Field(
        default=0.1, gt=0, description="sys.setswitchinterval of the service process, in ms (CPython's: 5)"
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch intra-op threads; unset: 1, or torch's default with the transformers LLM backend",
    )

    # explanations
    llm_backend: Literal["auto", "vllm", "transformers", "openai", "none"] = Field(
        default="auto",
        description="auto: vLLM when importable, else transformers (never openai); openai: a remote vLLM "
        "OpenAI-compatible server at llm_url; none: rankings only",
    )
    # the remote backend (service/llm/openai_backend.py); the server is started for the bundle by
    # `python -m service.llm.remote_server --bundle DIR` (docs/deploy.md, "Remote LLM server")
    llm_url: str = Field(
        default="http://127.0.0.1:8001/v1", description="openai backend: the vLLM server's OpenAI API base URL"
    )
    llm_api_key: SecretStr | None = Field(
        default=None, description="openai backend: sent as a Bearer token (the server's --api-key)"
    )
    llm_connect_timeout_s: float = Field(
        default=2.0, gt=0, description="openai backend: most seconds to open a connection to the server"
    )
    llm_required: bool | None = Field(
        default=None,
        description="stop at startup if the LLM cannot start; unset: yes when llm_backend is named explicitly",
    )
    llm_model: str = Field(
        default=str(DEFAULT_MODEL_DIR), description="HF folder or hub name of the base LLM"
    )
    llm_device: str = "cpu"
    llm_dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(
        default="auto", description="auto: float32 for vLLM on a CPU, bfloat16 otherwise"
    )
    vllm_max_model_len: int = Field(default=2048, ge=256, description="vLLM context length (prompt + answer)")
    vllm_max_num_seqs: int = Field(default=64, ge=1, description="most sequences vLLM batches at once")
    vllm_kv_cache_gb: int = Field(default=1, ge=1, description="vLLM KV cache on a CPU, GiB")
    vllm_gpu_memory_fraction: float = Field(
        default=0.6, gt=0, lt=1, description="share of GPU memory vLLM takes; the rest: FAISS and the encoder"
    )
    explain_deadline_ms: int = Field(default=4000, ge=1)
    explain_max_new_tokens: int = Field(default=48, ge=1, le=512)
    explain_history_items: int = Field(default=5, ge=1, description="recent history titles cited in a prompt")
    explain_cache_ttl_s: int = Field(default=24 * 3600, ge=1)
    explain_max_items: int = Field(
        default=10, ge=1, description="items of a ranking that get explanations (the first N); the rest get null"
    )
    explain_max_pending: int = Field(
        default=8, ge=1,
        description='requests generating explanations at once; past it explanation_status is "shed" (no queue)',
    )
    explain_adapter: Literal["bundle", "base"] = Field(
        default="bundle",
        description='"bundle": the bundle\'s "explain" adapter (ReLRec) writes explanations when it has one; '
        '"base": the base weights do (see the explanation report, docs/results/explanations-*.md)',
    )

    # LLM rerank stage (DELRec; the bundle's `llm.rerank` spec says how its LLM ranks)
    rerank_default: bool | None = Field(
        default=None,
        description="rerank when a request does not say; unset: yes when the bundle has a rerank spec",
    )
    rerank_candidates: int | None = Field(
        default=None, ge=2, le=26,
        description="retrieved candidates the LLM reranks; unset: the bundle's n_candidates (also the cap)",
    )  # fmt: skip
    # 3 s: one rerank (20 candidates, ~530 tokens, SmolLM2 fp32) at concurrency 1 on the 2 shared cores took
    # p50 1.7-2.2 s, p99 2.1-3.1 s on both backends (scripts/bench_rerank.py); it also caps what the stage adds
    # when the engine is overloaded. A faster engine (GPU) wants a much smaller budget.
    rerank_deadline_ms: int = Field(
        default=3000, ge=1, description="past it the retrieval order is served (rerank_status timeout)"
    )

    # shutdown (python -m service): on SIGTERM /readyz turns 503 at once, requests are still served for
    # shutdown_drain_s (load balancers notice), then the listener closes and in-flight requests get up to
    # shutdown_grace_s to finish
    shutdown_drain_s: float = Field(default=5.0, ge=0, description="serve on after SIGTERM while /readyz is 503")
    shutdown_grace_s: float = Field(default=30.0, gt=0, description="wait for in-flight requests after draining")

    # API keys and per-key rate limits (service/auth; docs/service.md, "API keys, scopes and rate limits")
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description='JSON list of {"name", "sha256", "scopes", "rate_per_s"?, "burst"?} entries '
        "(python -m service.auth new-key prints one)",
    )
    api_keys_file: Path | None = Field(default=None, description="JSON file with more entries, same format")
    auth_required: bool | None = Field(
        default=None, description="unset: keys required iff some are configured; true with none: refuse to start"
    )
    rate_limit_per_s: float = Field(
        default=50.0, ge=0, description="requests/s per key (token-bucket refill), shared by all replicas; 0 = off"
    )
    rate_limit_burst: int = Field(default=100, ge=1, description="requests a key may send at once (bucket size)")

    # fault injection for the fault campaign (scripts/fault_campaign.py), never for production: unset, nothing
    # is wrapped
    fault_llm_delay_ms: int | None = Field(
        default=None, ge=0,
        description="FAULT INJECTION, not for production: every LLM engine call waits this long first, "
        "ignoring its deadline (a stalled engine; service/llm/faults.py)",
    )  # fmt: skip

    # HTTP
    max_body_bytes: int = Field(default=64 * 1024, ge=256)
    # the servers bound idle keep-alive connections only: a client that stops mid-body held its connection, file
    # descriptor and request for as long as it liked (the fault campaign's slow_clients fault)
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="most seconds a request body may take to arrive after its headers; 408 past it"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
