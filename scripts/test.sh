#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (system packages
# through apt-get, Python reference tools in .venv), then formatting, lints, Rust tests and the
# peer-validation tests (pydicom, dciodvfy, ...). CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

BEDSIDE_SKIP_BUILD=1 ./scripts/setup.sh
# Peers are installed above, so a missing one is a failure rather than a skip.
export BEDSIDE_REQUIRE_PEERS=1
# A one-shot build gains nothing from incremental caches, which would double the disk it takes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

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

echo "==> fuzzing the DICOM reader (fixed seed, bounded runs)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
# The harness also asserts its own bound (heap peak <= 16 x input + 4 MiB) on every input.
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run read -- -seed=1 -runs=400000 -max_len=65536 \
  -rss_limit_mb=512 -malloc_limit_mb=128 -print_final_stats=1)

echo "==> peer-validation tests (Python reference tools)"
# Same feature set as the test build above, so this only links what is already compiled.
cargo build --workspace --bins --locked
BEDSIDE_BIN="$PWD/target/debug/bedside" .venv/bin/python -m pytest tests/python -q
