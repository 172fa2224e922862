"""The vLLM engine's LoRA plan without an engine: target modules, the zero adapter, slots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from service.llm.vllm_lora import BASE, plan_loras, rank_slot, target_modules, zero_adapter
from tests.service.llm.fixtures import make_lora_adapter


@pytest.fixture(scope="module")
def adapter(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora_adapter(tiny_llm_dir, tmp_path_factory.mktemp("lora"))


def test_zero_adapter_has_the_shapes_and_no_weight(adapter: Path, tmp_path: Path) -> None:
    zero = zero_adapter(adapter, tmp_path / "zero")
    source, copy = load_file(str(adapter / "adapter_model.safetensors")), load_file(str(zero / "adapter_model.safetensors"))
    assert source.keys() == copy.keys() and any(bool(t.any()) for t in source.values())
    assert all(copy[k].shape == v.shape and not copy[k].any() for k, v in source.items())
    assert json.loads((zero / "adapter_config.json").read_text()) == json.loads((adapter / "adapter_config.json").read_text())


def test_target_modules_exclude_the_embeddings_with_prompt_embeds(adapter: Path, tmp_path: Path) -> None:
    assert target_modules([adapter], prompt_embeds=True) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    on_embeddings = tmp_path / "emb"
    on_embeddings.mkdir()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (on_embeddings / "adapter_config.json").write_text(json.dumps({**cfg, "target_modules": ["q_proj", "embed_tokens"]}))
    with pytest.raises(ValueError, match="51122"):
        target_modules([adapter, on_embeddings], prompt_embeds=True)
    assert target_modules([adapter, on_embeddings], prompt_embeds=False) == ["embed_tokens", "k_proj", "o_proj", "q_proj", "v_proj"]
    assert rank_slot(8) == 8 and rank_slot(9) == 16


def test_plan_every_request_on_an_adapter(adapter: Path) -> None:
    pytest.importorskip("vllm")
    off = plan_loras({}, prompt_embeds=True)
    assert off.engine_args == {"enable_lora": False} and off.base is None
    plan = plan_loras({"rerank": adapter}, prompt_embeds=True)
    try:
        assert plan.engine_args["max_loras"] == 2 and plan.engine_args["max_lora_rank"] == 8
        assert set(plan.requests) == {"rerank"} and plan.base.lora_name == BASE
        assert plan.tmp_dir is not None and (Path(plan.base.lora_path) / "adapter_model.safetensors").is_file()
        assert not any(t.any() for t in load_file(str(Path(plan.base.lora_path) / "adapter_model.safetensors")).values())
    finally:
        plan.close()
    assert not plan.tmp_dir.exists()
