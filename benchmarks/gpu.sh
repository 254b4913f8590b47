#!/usr/bin/env bash
# The GPU kit (docs/gpu.md): on one CUDA GPU, in at most 8 minutes, the tests marked cuda, the speed benchmark
# of both pairs and as much of the findings study as fits; results in the folder it prints (and in $OUT).
#   benchmarks/gpu.sh prepare      # here, once: a CIFAR-10 slice in .gpukit/ (git-ignored; carry it)
#   benchmarks/gpu.sh --dry-run    # here: checks the data, every command, the specs and the cuda tests
#   benchmarks/gpu.sh              # on the GPU machine (python3 with torch there; mixkd runs from src/)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3; fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" benchmarks/gpu_kit.py "$@"
