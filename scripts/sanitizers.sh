#!/usr/bin/env bash
# MC-10: the threaded stress tests of shmq-ring under ThreadSanitizer, then the
# whole shmq-ring test suite (threaded, hostile-peer and model tests) under
# AddressSanitizer with LeakSanitizer, on the stable toolchain
# (RUSTC_BOOTSTRAP=1 for -Zsanitizer). Each run is preceded by a negative control
# that must be reported, so a sanitizer that silently sees nothing fails the script.
# What is and is not covered: docs/FUZZING.md, "Sanitizers".
#
#   bash scripts/sanitizers.sh          # both
#   bash scripts/sanitizers.sh tsan     # or asan
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
which=${1:-all}

export RUSTC_BOOTSTRAP=1
# An explicit --target keeps RUSTFLAGS (and so the sanitizer) off build scripts and
# proc macros, which run on the host uninstrumented.
target=x86_64-unknown-linux-gnu
dir=${SANITIZER_TARGET_DIR:-$root/target/sanitizers}
# std is not rebuilt (no rust-src here, so no -Zbuild-std): it stays
# uninstrumented, hence -Cunsafe-allow-abi-mismatch.
abi="-Cunsafe-allow-abi-mismatch=sanitizer"

section() { printf '\n=== %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }

# Runs a negative control that must fail with `pattern` in its output.
negative_control() {
  local name=$1 pattern=$2; shift 2
  local out rc
  set +e
  out=$("$@" 2>&1)
  rc=$?
  set -e
  if [ $rc -eq 0 ] || ! grep -q "$pattern" <<<"$out" || ! grep -q "shmq_ring\|model::tests" <<<"$out"; then
    echo "$out" | tail -n 40
    fail "negative control $name was not reported (exit $rc): the sanitizer is not seeing the code"
  fi
  echo "negative control $name: reported, as it must be"
}

tsan() {
  local flags="-Zsanitizer=thread $abi"
  local opts="suppressions=$root/scripts/tsan.supp halt_on_error=1 second_deadlock_stack=1"
  section "ThreadSanitizer: build"
  RUSTFLAGS="$flags" CARGO_TARGET_DIR=$dir/tsan \
    cargo test -p shmq-ring --target $target --release --test spsc --test mpsc --test model --no-run
  section "ThreadSanitizer: negative control"
  negative_control tsan_two_producers "ThreadSanitizer: data race" \
    env RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir/tsan" TSAN_OPTIONS="$opts" \
    cargo test -p shmq-ring --target $target --release --test model -- \
    --ignored --exact tests::tsan_negative_control_two_producers_race
  section "ThreadSanitizer: threaded stress tests"
  local t0=$SECONDS
  RUSTFLAGS="$flags" CARGO_TARGET_DIR=$dir/tsan TSAN_OPTIONS="$opts" \
    cargo test -p shmq-ring --target $target --release --test spsc -- \
    --exact threads_stream_a_million_verified_messages
  RUSTFLAGS="$flags" CARGO_TARGET_DIR=$dir/tsan TSAN_OPTIONS="$opts" \
    cargo test -p shmq-ring --target $target --release --test mpsc -- \
    --exact four_threads_exactly_once_in_per_producer_order
  echo "ThreadSanitizer: clean ($((SECONDS - t0)) s of tests)"
}

asan() {
  local flags="-Zsanitizer=address $abi"
  local opts="detect_leaks=1 detect_stack_use_after_return=1 check_initialization_order=1 strict_init_order=1"
  local lopts="suppressions=$root/scripts/lsan.supp print_suppressions=0"
  section "AddressSanitizer: build"
  # --lib --tests: doctests are built by rustdoc, which RUSTFLAGS does not reach.
  RUSTFLAGS="$flags" CARGO_TARGET_DIR=$dir/asan \
    cargo test -p shmq-ring --target $target --release --lib --tests --no-run
  section "AddressSanitizer: negative control"
  negative_control asan_read_past_buffer "AddressSanitizer: heap-buffer-overflow" \
    env RUSTFLAGS="$flags" CARGO_TARGET_DIR="$dir/asan" ASAN_OPTIONS="$opts" LSAN_OPTIONS="$lopts" \
    cargo test -p shmq-ring --target $target --release --test model -- \
    --ignored --exact tests::asan_negative_control_reads_past_a_buffer
  section "AddressSanitizer + LeakSanitizer: every shmq-ring test"
  local t0=$SECONDS
  RUSTFLAGS="$flags" CARGO_TARGET_DIR=$dir/asan ASAN_OPTIONS="$opts" LSAN_OPTIONS="$lopts" \
    cargo test -p shmq-ring --target $target --release --lib --tests
  echo "AddressSanitizer: clean ($((SECONDS - t0)) s of tests)"
}

started=$SECONDS
case $which in
  tsan) tsan ;;
  asan) asan ;;
  all) tsan; asan ;;
  *) fail "usage: $0 [tsan|asan|all]" ;;
esac
printf '\nsanitizers passed in %d s\n' "$((SECONDS - started))"
