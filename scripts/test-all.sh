#!/usr/bin/env bash
# Every test of shmq, as CI runs it: unit, integration, cross-process, reliability
# and soak tests (SOAK_SECS, default 60), doctests, loom models (with their
# negative controls), the adversary read-count tests, a system-call count of a
# streaming run, short fuzzing runs (FUZZ_SECS per target, default 20), the
# sanitizers, and documentation warnings. Run from anywhere: bash scripts/test-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n=== %s\n' "$*"; }
started=$SECONDS

# The names the tests create in /dev/shm; what matches before the run (a run
# interrupted earlier on this machine, another user's) is not this run's leak.
ours() {
  find /dev/shm -maxdepth 1 \( -name 't-*' -o -name 'cli-test-*' -o -name 'doc*' \
    -o -name 'agg*' -o -name 'seg-unit-*' -o -name 'ps04-*' -o -name 'jobs-*' -o -name 'futex-count-*' \
    -o -name '.shmq-tmp-*' -o -name '.shmq-bell-*' \) | sort
}
before=$(ours)
if [ -n "$before" ]; then
  echo "in /dev/shm before the run (not counted as this run's leaks):"; echo "$before"
fi

section "tools: strace (used by a CF-10 test and the system-call count)"
if ! command -v strace >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq strace) >/dev/null 2>&1 || true
fi
command -v strace >/dev/null 2>&1 && echo "strace: $(strace -V | head -n 1)" || echo "strace: not available"

section "build (release, with failpoints and async) and examples"
cargo build --release --workspace --all-targets --features failpoints,async

section "unit, integration and cross-process tests"
# nextest runs every test in its own process, with the time-outs and the serial
# group for spinning tests of .config/nextest.toml; plain `cargo test` has neither.
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "cargo-nextest not installed: installing it (cargo install cargo-nextest --locked)"
  cargo install cargo-nextest --locked
fi
cargo nextest run --release --workspace --all-targets --features failpoints,async --no-tests=pass

section "doctests"
cargo test --release --workspace --doc --features failpoints,async

section "loom models (LOOM_MAX_PREEMPTIONS=2)"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
  cargo test -p shmq-ring --test loom --release

section "loom negative controls: without the wake-up fences the models must deadlock"
RUSTFLAGS="--cfg loom --cfg shmq_negative_control" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom-neg \
  cargo test -p shmq-ring --test loom --release -- negative_control

section "adversary shim: every shared word read once per operation; a flipper between reads"
RUSTFLAGS="--cfg shmq_adversary" CARGO_TARGET_DIR=target/adversary \
  cargo test -p shmq-ring --test adversary --release

section "system calls of a streaming run with an awake consumer (strace -f -c)"
if command -v strace >/dev/null 2>&1; then
  bash scripts/futex-count.sh
else
  echo "SKIP: strace is not available and could not be installed"
fi

section "fuzzing, ${FUZZ_SECS:-20} s per target (long form: bash scripts/fuzz.sh 600)"
bash scripts/fuzz.sh "${FUZZ_SECS:-20}"

section "sanitizers: ThreadSanitizer and AddressSanitizer on the threaded tests"
bash scripts/sanitizers.sh

section "documentation builds without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --features async --quiet

section "nothing left behind in /dev/shm"
left=$(comm -13 <(echo "$before") <(ours) | sed '/^$/d' | head -n 20)
if [ -n "$left" ]; then
  echo "left in /dev/shm by the tests:"; echo "$left"; exit 1
fi

printf '\nall tests passed in %d s\n' "$((SECONDS - started))"
