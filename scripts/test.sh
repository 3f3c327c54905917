#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (system packages
# through apt-get, Python reference tools in .venv), then formatting, lints, Rust tests and the
# peer-validation tests (pydicom, dciodvfy, ...). CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

BEDSIDE_SKIP_BUILD=1 ./scripts/setup.sh
# Peers are installed above, so a missing one is a failure rather than a skip.
export BEDSIDE_REQUIRE_PEERS=1

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --locked --doc

echo "==> peer-validation tests (Python reference tools)"
cargo build --locked -p bedside-cli
BEDSIDE_BIN="$PWD/target/debug/bedside" .venv/bin/python -m pytest tests/python -q
