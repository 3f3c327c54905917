#!/usr/bin/env bash
# Builds and runs the DICOM reader's fuzz target (fuzz/fuzz_targets/read.rs) the way `cargo fuzz
# run read` does: libFuzzer with SanitizerCoverage and AddressSanitizer, release profile with
# debug assertions and overflow checks. It needs no cargo-fuzz (`cargo fuzz run read` works too,
# once installed). Arguments go to libFuzzer; the corpus grows in fuzz/corpus/read, and a crash
# is written to fuzz/artifacts/read/.
#
#   scripts/fuzz.sh -runs=400000 -seed=1          # what the test suite runs
#   scripts/fuzz.sh -max_total_time=600           # ten minutes of fuzzing
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
triple=$(rustc -vV | sed -n 's/^host: //p')
# Sanitizer flags are unstable; RUSTC_BOOTSTRAP lets the stable toolchain accept them. The
# explicit --target keeps them off build scripts and proc macros.
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth --cfg fuzzing -Zsanitizer=address"
flags+=" -Cdebug-assertions -Coverflow-checks"
RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" CARGO_TARGET_DIR=target \
  cargo build --release --locked --target "$triple" --bin read
mkdir -p corpus/read artifacts/read
exec "target/$triple/release/read" -artifact_prefix=artifacts/read/ corpus/read "$@"
