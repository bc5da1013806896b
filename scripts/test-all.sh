#!/usr/bin/env bash
# Every test of shmq, as CI runs it: unit, integration and cross-process tests,
# doctests, loom models (with their negative controls), a system-call count of a
# streaming run, and documentation warnings. Run from anywhere: bash scripts/test-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n=== %s\n' "$*"; }
started=$SECONDS

section "build (release, with failpoints) and examples"
cargo build --release --workspace --all-targets --features failpoints

section "unit, integration and cross-process tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --release --workspace --all-targets --features failpoints --no-tests=pass
else
  echo "cargo-nextest not installed: running cargo test (install it with: cargo install cargo-nextest --locked)"
  cargo test --release --workspace --all-targets --features failpoints
fi

section "doctests"
cargo test --release --workspace --doc --features failpoints

section "loom models (LOOM_MAX_PREEMPTIONS=2)"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
  cargo test -p shmq-ring --test loom --release

section "loom negative controls: without the wake-up fences the models must deadlock"
RUSTFLAGS="--cfg loom --cfg shmq_negative_control" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom-neg \
  cargo test -p shmq-ring --test loom --release -- negative_control

section "system calls of a streaming run with an awake consumer (strace -f -c)"
if ! command -v strace >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq strace) >/dev/null 2>&1 || true
fi
if command -v strace >/dev/null 2>&1; then
  bash scripts/futex-count.sh
else
  echo "SKIP: strace is not available and could not be installed"
fi

section "documentation builds without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet

section "nothing left behind in /dev/shm"
left=$(find /dev/shm -maxdepth 1 -name 't-*' -o -maxdepth 1 -name 'cli-test-*' -o -maxdepth 1 -name 'doc*' | head -n 20)
if [ -n "$left" ]; then
  echo "left in /dev/shm by the tests:"; echo "$left"; exit 1
fi

printf '\nall tests passed in %d s\n' "$((SECONDS - started))"
