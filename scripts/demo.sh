#!/usr/bin/env bash
# Sets up a fresh machine (system packages, Python reference tools, release build) and runs
# `bedside demo`, the whole pipeline on a synthetic cohort. Extra arguments go to `bedside demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec ./target/release/bedside demo "$@"
