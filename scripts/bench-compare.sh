#!/usr/bin/env bash
# Compares the criterion `ring` benchmarks of an earlier commit with the working
# tree, in interleaved rounds on this machine (old, new, old, new, ...), and prints
# per benchmark the median of each side and the median of the per-round ratios
# new/old. The machine is shared and noisy: only the ratios within one run mean
# anything, and a quiet machine (check `uptime`) is needed for them to mean much.
#
#   bash scripts/bench-compare.sh 9902d95            # 3 rounds
#   ROUNDS=5 bash scripts/bench-compare.sh 9902d95
#   FILTER=send_recv bash scripts/bench-compare.sh 9902d95   # only these benches
#   NEW_REV=HEAD bash scripts/bench-compare.sh 9902d95  # a commit, built like the old
#
# The old commit is checked out in target/bench-compare/old (a detached worktree)
# and built with its own target directory; with NEW_REV, the new side too (in
# target/bench-compare/new), so that both are built the same way. Two builds of
# the same source measured 16.7 ns (here) and 17.7-18.0 ns (in ./target) on
# send_recv/spsc/8 in runs minutes apart (2026-12-05), a 6 % "change":
# compare commits with NEW_REV, not a commit with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
# Both revisions are resolved here, in this checkout: inside a worktree, `HEAD`
# (or `HEAD~2`) would name the worktree's own commit (until 2026-12-05 a
# reused worktree kept measuring the commit it had first checked out).
old_rev=$(git rev-parse --verify "${1:?usage: bench-compare.sh OLD_REV}^{commit}")
rounds=${ROUNDS:-3}
work=$PWD/target/bench-compare
mkdir -p "$work"

bench_bin() { # the `ring` bench executable built in $1 with target dir $2
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo bench --bench ring --no-run --message-format=json 2>/dev/null) |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ring" and m.get("executable"):
        print(m["executable"])'
}

if [[ ! -d $work/old ]]; then
  git worktree add --detach "$work/old" "$old_rev" >/dev/null
else
  git -C "$work/old" checkout --detach -q "$old_rev"
fi
old=$(bench_bin "$work/old" "$work/target-old")
if [[ -n ${NEW_REV:-} ]]; then
  new_rev=$(git rev-parse --verify "$NEW_REV^{commit}")
  # Both sides built alike (a worktree and a target directory of their own):
  # a build's code placement alone moves the small rows by a few per cent.
  if [[ ! -d $work/new ]]; then
    git worktree add --detach "$work/new" "$new_rev" >/dev/null
  else
    git -C "$work/new" checkout --detach -q "$new_rev"
  fi
  new=$(bench_bin "$work/new" "$work/target-new")
  new_name="$NEW_REV ($new_rev)"
else
  new=$(bench_bin "$PWD" "$PWD/target")
  new_name="working tree"
fi
echo "old: $old_rev ($old)"
echo "new: $new_name ($new)"
echo "load: $(uptime)"

for r in $(seq 1 "$rounds"); do
  for side in old new; do
    bin=$old
    [[ $side == new ]] && bin=$new
    echo "round $r: $side"
    # shellcheck disable=SC2086 # FILTER is criterion's name filter, one word
    "$bin" --bench --noplot ${FILTER:-} >"$work/$side-$r.txt" 2>&1
  done
done

python3 - "$work" "$rounds" <<'EOF'
import re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
unit = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6}
def parse(path):
    # "Benchmarking NAME..." names the benchmark; its first "time: [lo mid hi]"
    # line with a time unit is the estimate (later "time:" lines are changes).
    out, name = {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"^Benchmarking ([^:\s]+)", line)
        if m:
            name = m.group(1)
            continue
        m = re.search(r"time:\s+\[\S+ \S+ (\S+) (ps|ns|µs|us|ms) \S+ \S+\]", line)
        if m and name and name not in out:
            out[name] = float(m.group(1)) * unit[m.group(2)]
    return out
runs = {s: [parse(f"{work}/{s}-{r}.txt") for r in range(1, rounds + 1)] for s in ("old", "new")}
names = [n for n in runs["old"][0] if all(n in x for x in runs["old"] + runs["new"])]
print(f"\n{'benchmark':34} {'old ns':>9} {'new ns':>9} {'new/old':>8}   (medians; ratio = median of per-round ratios)")
for n in names:
    o = [x[n] for x in runs["old"]]
    w = [x[n] for x in runs["new"]]
    ratio = statistics.median(b / a for a, b in zip(o, w))
    print(f"{n:34} {statistics.median(o):9.1f} {statistics.median(w):9.1f} {ratio:8.3f}")
EOF
