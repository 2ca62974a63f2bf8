# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-live test-all lint clean

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

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out build *.egg-info
