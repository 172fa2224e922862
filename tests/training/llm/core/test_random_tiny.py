from pathlib import Path

from training.llm.core.model import EncoderConfig, model_dir
from training.llm.core.random_tiny import TinyLlamaSpec, random_tiny_dir


def test_random_tiny_is_built_once_per_config_and_seeded(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    first = random_tiny_dir(cache_root=tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert random_tiny_dir(cache_root=tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    cfg = AutoConfig.from_pretrained(first)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (64, 2, 4)
    assert cfg.vocab_size == len(AutoTokenizer.from_pretrained(first))  # SmolLM2's tokenizer, saved with it
    key = "model.layers.0.self_attn.q_proj.weight"
    a = load_file(first / "model.safetensors")[key]
    again = load_file(random_tiny_dir(cache_root=tmp_path / "elsewhere") / "model.safetensors")[key]
    assert (a == again).all()  # seeded: every machine builds the same weights
    other = random_tiny_dir(TinyLlamaSpec(seed=1), cache_root=tmp_path)
    assert other != first and not (a == load_file(other / "model.safetensors")[key]).all()


def test_the_marker_selects_it() -> None:
    assert Path(model_dir(EncoderConfig(base_model="random-tiny"))).name.startswith("random-tiny-")
