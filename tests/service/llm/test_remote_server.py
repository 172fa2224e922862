"""The remote server's launcher without a server: the vLLM command it builds for a bundle (the safety flags of
vllm_lora.py, the adapters under names that hash their weights) and the names the service asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recbundle import load_manifest
from recbundle.rerank import RerankSpec
from service.llm.remote_server import served_names, server_command
from tests.service.bundle_factory import build_bundle
from tests.service.llm.fixtures import make_lora_adapter, make_soft_prompt


def _bundle(tmp: Path, tiny_llm_dir: Path, seed: int) -> Path:
    explain = make_lora_adapter(tiny_llm_dir, tmp / f"explain{seed}", seed=seed)
    rerank = make_lora_adapter(tiny_llm_dir, tmp / "rerank", seed=1)
    soft = np.load(make_soft_prompt(tmp / "soft.npy", n_tokens=4, hidden=64))
    root = tmp / f"bundle{seed}"
    build_bundle(root, lora_adapter=explain, soft_prompt=soft, rerank=RerankSpec(), rerank_adapter=rerank)
    return root


def test_the_command_holds_the_bundles_adapters_safely(tmp_path: Path, tiny_llm_dir: Path) -> None:
    bundle = _bundle(tmp_path, tiny_llm_dir, seed=0)
    cmd = server_command(bundle, str(tiny_llm_dir), host="127.0.0.1", port=8123, dtype="float32", device="cpu",
                         max_model_len=2048, zero_dir=tmp_path / "zero", extra=["--api-key", "k"])  # fmt: skip
    line = " ".join(cmd)
    names = served_names(load_manifest(bundle), ["explain", "rerank"], str(tiny_llm_dir))
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and cmd[-2:] == ["--api-key", "k"]
    assert f"--served-model-name {names.model} " in line and "--enforce-eager" in cmd
    assert "--enable-prompt-embeds" in cmd and "--enable-lora" in cmd
    assert "--lora-target-modules k_proj o_proj q_proj v_proj " in line  # vLLM #51122: never the embeddings
    assert "--max-loras 3" in line and "--max-lora-rank 8" in line  # a slot for each, the zero adapter too
    modules = cmd[cmd.index("--lora-modules") + 1 : cmd.index("--api-key")]
    assert modules == [
        f"{names.adapters['explain']}={bundle.resolve() / 'lora/explain'}",
        f"{names.adapters['rerank']}={bundle.resolve() / 'llm/rerank'}",
        f"base-weights={tmp_path / 'zero' / 'base-weights'}",
    ]
    assert names.base == "base-weights" and names.required() == {names.model, "base-weights", *names.adapters.values()}


def test_adapters_with_other_weights_get_other_names(tmp_path: Path, tiny_llm_dir: Path) -> None:
    one, two = (served_names(load_manifest(_bundle(tmp_path, tiny_llm_dir, s)), ["explain", "rerank"], "M") for s in (0, 2))
    assert one.adapters["rerank"] == two.adapters["rerank"]  # same weights, same name
    assert one.adapters["explain"] != two.adapters["explain"] and one.adapters["explain"].startswith("explain-")
