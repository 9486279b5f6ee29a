# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv first.
PYTHON ?= python3
VENV := .venv
DEMO_OUT := colabflow-data

.PHONY: demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The tests raise torch's real CUDA out-of-memory error on the CPU. torch==2.13.0 is the CPU
# wheel; a bare `torch` would pull several GB of CUDA packages.
$(VENV)/.torch: $(VENV)/.installed
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/colabflow compress tests/data/sample $(DEMO_OUT) --job demo
	$(VENV)/bin/colabflow restore $(DEMO_OUT)/demo $(DEMO_OUT)/demo-restored
	$(VENV)/bin/colabflow verify $(DEMO_OUT)/demo

test: $(VENV)/.installed $(VENV)/.torch
	$(VENV)/bin/python -m pytest
