#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of shmq (catalogue FZ-01..FZ-06) for
# SECONDS each (default 30), one after the other, one libFuzzer process at a time,
# with AddressSanitizer, debug assertions and overflow checks (cargo fuzz's
# defaults). Fails on the first crash, leak, timeout or out-of-memory, and prints a
# one-line summary per target. See docs/FUZZING.md.
#
#   bash scripts/fuzz.sh            # 30 s per target (CI)
#   bash scripts/fuzz.sh 600        # the long form: 10 min per target
#   FUZZ_TARGETS="frame_decoder ops_vs_model" bash scripts/fuzz.sh 60
#
# New inputs the fuzzer finds go to fuzz/target/corpus/<target> (not committed);
# the committed seeds in fuzz/corpus/<target> are only read. A crash is saved
# under fuzz/artifacts/<target>/ and can be replayed with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# (interleaved_adversary also needs RUSTFLAGS="--cfg shmq_adversary" and
# --target-dir fuzz/target/adversary, as below).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${1:-${FUZZ_SECS:-30}}
targets=${FUZZ_TARGETS:-"attach_header consumer_drain frame_decoder ops_vs_model interleaved_adversary broadcast_drain"}

# cargo fuzz passes -Z flags to cargo and rustc: let the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
# cargo fuzz keeps its builds in fuzz/target (and looks for the binaries there).
unset CARGO_TARGET_DIR

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz not installed: installing it (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

# Longest input per target, and extra libFuzzer flags.
max_len() {
  case $1 in
    attach_header) echo 65600 ;;
    consumer_drain) echo 4096 ;;
    frame_decoder) echo 64 ;;
    *) echo 4096 ;;
  esac
}

summary=()
status=0
for t in $targets; do
  work=fuzz/target/corpus/$t
  mkdir -p "$work" "fuzz/artifacts/$t"
  log=fuzz/target/fuzz-$t.log
  # The adversary target needs the read-reporting atomics of shmq-ring, a rustc
  # cfg for the whole build, so it gets a target directory of its own.
  extra=()
  if [ "$t" = interleaved_adversary ]; then
    export RUSTFLAGS="${RUSTFLAGS_BASE:-} --cfg shmq_adversary"
    extra=(--target-dir fuzz/target/adversary)
  else
    export RUSTFLAGS="${RUSTFLAGS_BASE:-}"
  fi
  echo "=== $t: building"
  (cd fuzz && cargo fuzz build "${extra[@]}" "$t")
  echo "=== $t: fuzzing for ${secs}s (log: $log)"
  started=$SECONDS
  set +e
  (cd fuzz && cargo fuzz run "${extra[@]}" "$t" "$root/$work" "$root/fuzz/corpus/$t" -- \
      -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  took=$((SECONDS - started))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  if [ $rc -eq 0 ]; then
    line="$t: ok, ${runs:-?} runs in ${took}s (${rate:-?} exec/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
  else
    status=1
    line="$t: FAILED (exit $rc) after ${took}s; see $log and fuzz/artifacts/$t/"
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 8 || true
  fi
  echo "$line"
  summary+=("$line")
done

echo
echo "=== fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
