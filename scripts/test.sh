#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (system packages
# through apt-get, Python reference tools in .venv), then formatting, lints, Rust tests and the
# peer-validation tests (pydicom, dciodvfy, ...). CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage's wall time, printed again at the end (CI keeps only the tail of the log).
started=$SECONDS
last=$SECONDS
timings=""
stage() {
  timings+=$(printf '  %-28s %5d s' "$1" $((SECONDS - last)))$'\n'
  last=$SECONDS
}
pg_dir=""
finish() {
  if [[ -n "$pg_dir" ]]; then
    ./scripts/postgres.sh stop "$pg_dir"
    rm -rf "$pg_dir"
  fi
  printf "==> stage times\n%s  %-28s %5d s\n" "$timings" total $((SECONDS - started))
}
trap finish EXIT

BEDSIDE_SKIP_BUILD=1 ./scripts/setup.sh
# A throwaway PostgreSQL for the annotation server's shared-database tests.
pg_dir=$(mktemp -d)
pg_env=$(./scripts/postgres.sh start "$pg_dir")
eval "$pg_env"
stage "setup"
# Peers are installed above, so a missing one is a failure rather than a skip.
export BEDSIDE_REQUIRE_PEERS=1
# A one-shot build gains nothing from incremental caches, which would double the disk it takes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
stage "fmt"
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
stage "clippy"

echo "==> Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  # Examples are left to clippy above: building them again here would only cost time.
  cargo nextest run --workspace --locked --no-fail-fast --lib --bins --tests
else
  cargo test --workspace --locked --no-fail-fast --lib --bins --tests
fi
cargo test --workspace --locked --doc
stage "Rust tests"

echo "==> annotation server tests again, on PostgreSQL"
# Their fixtures each take a fresh database there instead of the data folder's SQLite file.
BEDSIDE_ANNOTATE_TEST_POSTGRES="$BEDSIDE_TEST_POSTGRES" cargo test --workspace --locked \
  --no-fail-fast --test access --test annotations --test collab --test crash --test exports
stage "annotate on PostgreSQL"

echo "==> fuzzing the DICOM reader (fixed seed, bounded runs)"
# The harness also asserts its own bound (heap peak <= 16 x input + 4 MiB) on every input.
./scripts/fuzz.sh -seed=1 -runs=400000 -max_len=65536 -rss_limit_mb=512 -malloc_limit_mb=128 \
  -print_final_stats=1
stage "fuzzing"

echo "==> peer-validation tests (Python reference tools)"
# Same feature set as the test build above, so this only links what is already compiled.
cargo build --workspace --bins --locked
# Two workers, one test file each at a time: most tests wait on servers and subprocesses.
BEDSIDE_BIN="$PWD/target/debug/bedside" .venv/bin/python -m pytest tests/python -q \
  -n 2 --dist loadfile --durations=15
stage "peer-validation tests"
