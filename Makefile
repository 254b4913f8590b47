# The two commands a newcomer runs: `make quickstart` (the main job) and `make test`.
# Each sets itself up: a virtual environment in .venv, mixkd and its dependencies, and the
# offline Fashion-MNIST data (Debian package dataset-fashion-mnist) where apt-get can install it.
# `make test-slow` runs every test, the long ones included; `make bench` the step benchmark of docs/speed.md.
# `make findings` runs (or resumes) the study behind docs/findings.md and rewrites the page (about an hour on 2 idle CPU cores);
# a bare `mixkd findings` writes its page into the study's folder instead (runs/findings/findings.md).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mixkd-installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data cxx slurm quickstart test test-slow lint bench findings

setup: $(STAMP)

# CI pins the torch it is tested with (from this machine's wheels); pyproject.toml admits newer versions.
# On a machine without a GPU, `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes PyTorch's CPU
# build instead of the default CUDA build (whose NVIDIA libraries are 3.2 GB of the 5.9 GB .venv).
TORCH_INDEX ?=
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

data:
	@if [ -f $(FMNIST) ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null)); \
	else \
		echo "note: Debian package dataset-fashion-mnist not installed; mixkd will try torchvision's download"; \
	fi

# torch.compile on the CPU (teacher.compile, runtime.compile: auto for long runs) calls a C++ compiler
cxx:
	@if command -v $${CXX:-g++} >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing g++ (Debian package) for torch.compile"; \
		(apt-get install -y -qq g++ >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq g++ >/dev/null)); \
	else \
		echo "note: no C++ compiler (g++); mixkd runs uncompiled and the compile tests skip"; \
	fi

# the launcher tests (tests/sweeps) start a real single-node Slurm from Debian's slurm-wlm and munge
slurm:
	@if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Slurm (Debian packages slurm-wlm munge) for the launcher tests"; \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || \
		 (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null)); \
	else \
		echo "note: Slurm (slurm-wlm, munge) not installed and no root to install it; the launcher tests skip"; \
	fi

quickstart: setup data
	$(VENV)/bin/mixkd quickstart

# the suite runs in TEST_JOBS pytest processes, one test file each at a time (most tests train on one thread)
TEST_JOBS ?= 2
test: setup data cxx slurm
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

test-slow: setup data cxx slurm
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile -m 'slow or not slow'

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup data
	$(VENV)/bin/mixkd bench step --rounds 3 --steps 10

findings: setup
	$(VENV)/bin/mixkd findings --jobs 2 --page docs/findings.md
