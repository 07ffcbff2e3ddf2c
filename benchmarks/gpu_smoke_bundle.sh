#!/usr/bin/env bash
# The wheels benchmarks/gpu_smoke.py needs beyond torch, transformers, peft and accelerate (which the lent
# GPU machine has), for Python 3.12 on x86-64 Linux, into .whl/ (carry it; `pip install --no-deps .whl/*`
# there). Measured 2026-12-07: 57.4 MB (pyarrow 55.0 MB of it). Fails if the set grows past 60 MB.
set -euo pipefail
out="${1:-.whl}"
mkdir -p "$out"
"${PYTHON:-python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any -d "$out" \
  trl==1.16.0 datasets==5.2.0 dill multiprocess xxhash pyarrow
bytes=$(du -cb "$out"/*.whl | tail -1 | cut -f1)
echo "$out: $(ls "$out"/*.whl | wc -l) wheels, $((bytes / 1000000)) MB"
if [ "$bytes" -gt 60000000 ]; then echo "the GPU smoke bundle is over 60 MB" >&2; exit 1; fi
