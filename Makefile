# The README's commands. A fresh machine needs only Python 3.11 and a C++ compiler:
# `make demo` / `make test` create the venv, install pinned dependencies (torch 2.13.0 CPU),
# build the extension against that torch (no build isolation), then run.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu') setup.py pyproject.toml

.PHONY: venv build demo demo-spmm test bench bench-quick cuda-check gpu-check clean

$(VENV)/.deps: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.deps

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

build: $(VENV)/.built

demo: build
	$(PY) -m sparselth demo

demo-spmm: build
	$(PY) -m sparselth demo-spmm

test: build
	$(PY) -m pytest -q

bench: build
	$(PY) -m bench.spmm

bench-quick: build
	$(PY) -m bench.spmm --quick

cuda-check:
	bash .ci/check_cuda.sh

# On a machine with an NVIDIA GPU: build with CUDA, run every GPU test, time the GPU kernels
# (bench/results/gpu-<device>.*), in <= 8 minutes. Says so and exits 0 where there is no GPU.
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf build *.egg-info sparselth/_C*.so $(VENV)
