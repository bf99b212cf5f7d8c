#!/usr/bin/env bash
# The wheels bench/gpu_check.sh needs on the GPU machine (Python 3.12, manylinux x86-64), into the
# git-ignored bench/gpu-wheels/: each wheel's size, the total, the working tree and the set(s) to
# carry, each under the device tool's 64 MiB per call. The rules: bench/gpu_wheels.py; docs/gpu.md.
#   bash bench/gpu_wheels.sh [--dry-run] [--dest DIR] [--limit-mib 64]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
if [[ ! -x $PY ]]; then
  echo "gpu_wheels.sh: error: $PY not found: run 'make install' first (or set PYTHON)" >&2
  exit 2
fi
exec "$PY" "$ROOT/bench/gpu_wheels.py" "$@"
