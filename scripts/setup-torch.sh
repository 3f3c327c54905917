#!/usr/bin/env bash
# Optional: installs libtorch (through the PyPI torch wheel) for the `tch` backend of bedside-ml and for the
# PyTorch side of the video benchmark. Not part of scripts/setup.sh: the wheels with their CUDA libraries are a
# ~3.8 GB download (~7 GB on disk).
#
# Creates .venv-torch with torch==2.9.0 (the libtorch version that burn 0.22.1's tch 0.22.0 binds to) and the
# matching torchvision 0.24.0. Safe to re-run: skipped when the right versions are already installed.
#
# Afterwards build and run with:
#   export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv-torch/bin:$PATH"
#   cargo run --release -p bedside-ml --features tch --example bench_video
# bedside-ml's tests and examples carry an rpath to torch/lib (its build.rs); other binaries, such as
# the bedside CLI, run with LD_LIBRARY_PATH set to that directory (printed below).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.9.0
TORCHVISION_VERSION=0.24.0
VENV=.venv-torch

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating Python virtual environment $VENV"
  python3 -m venv "$VENV"
fi

have=$("$VENV/bin/python" -c 'import torch, torchvision; print(torch.__version__.split("+")[0], torchvision.__version__.split("+")[0])' 2>/dev/null || true)
if [ "$have" = "$TORCH_VERSION $TORCHVISION_VERSION" ]; then
  echo "==> $VENV already has torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION"
else
  echo "==> installing torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION into $VENV (large download)"
  # The full wheel set is required: with --no-deps, libtorch fails to load for want of libcudart.
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" numpy
fi

echo "==> libtorch directory: $("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
echo "    build the tch backend with: LIBTORCH_USE_PYTORCH=1 PATH=\"$PWD/$VENV/bin:\$PATH\" cargo build --features tch ..."
