#!/usr/bin/env bash
# Streams 10^6 messages between the example producer and consumer under
# `strace -f -c` and checks that the futex system calls are a tiny fraction of the
# messages: while the consumer is awake, sending and receiving make no system call.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=1000000
name="/futex-count-$$"
bin=target/release/examples
out=$(mktemp)
consumer=
# Whatever happens (strace refused, the producer failing), no consumer is left
# waiting and no segment left behind.
cleanup() {
  if [ -n "$consumer" ]; then kill "$consumer" 2>/dev/null || true; fi
  rm -f "$out" "/dev/shm${name}"
}
trap cleanup EXIT
timeout 120 "$bin/consumer" --name "$name" --count "$messages" >/dev/null &
consumer=$!
timeout 120 strace -f -c -e trace=futex -o "$out" \
  "$bin/producer" --name "$name" --count "$messages" --size 64 >/dev/null
wait "$consumer"
consumer=
calls=$(awk '$NF == "futex" { print $4 }' "$out")
calls=${calls:-0}
echo "producer process: $calls futex calls for $messages messages"
if [ "$calls" -gt $((messages / 100)) ]; then
  echo "FAIL: more than one futex call per 100 messages"; cat "$out"; exit 1
fi
