#!/usr/bin/env bash
# Catalogue MC-07, the ordering mutation sweep: weakens one atomic ordering of the
# ring at a time (Release, Acquire or SeqCst to Relaxed; AcqRel to Acquire and to
# Release; the SeqCst fence to AcqRel, since a Relaxed fence does not exist) and
# runs the loom models against each mutant. A mutant that some model catches is
# "killed"; one that every model passes "survived": that ordering is either not
# needed or not tested, and must be listed, with the reason, in
# scripts/ordering-sweep.allow (reasons in docs/RELIABILITY.md, section MC-07).
#
#   bash scripts/ordering-sweep.sh               # every site (about 20 min here)
#   SWEEP_FILES="ctl.rs wait.rs" bash scripts/ordering-sweep.sh
#   SWEEP_FILES=broadcast.rs SWEEP_MODELS=broadcast bash scripts/ordering-sweep.sh
#                                                # only the models whose name has "broadcast"
#   SWEEP_LIST=1 bash scripts/ordering-sweep.sh  # only list the sites
#   SWEEP_SINCE=74ae628 bash scripts/ordering-sweep.sh
#                                                # only the sites whose allow-list key
#                                                # (file, function, line, ...) is new
#                                                # since that commit (the full sweep
#                                                # takes about 2 h here)
#
# The sweep works on a copy of the tracked files under target/ordering-sweep and
# never touches the checkout. Results: target/ordering-sweep/results.tsv (site,
# mutation, outcome, the models that failed). Exit status 1 if a mutant survived
# that the allow list does not name, or if the unmutated models fail. The allow
# list names a site as file|function|source line|occurrence|weaker ordering, one
# per line; lines starting with # are comments.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

files=${SWEEP_FILES:-"spsc.rs mpsc.rs broadcast.rs ctl.rs wait.rs peer.rs region.rs sync.rs local.rs producer.rs consumer.rs kind.rs"}
per_mutant_timeout=${SWEEP_TIMEOUT:-600}
# A cargo test name filter: which models judge the mutants (all by default). Only
# for files no other model reaches: a mutant is "survived" if these pass.
models=${SWEEP_MODELS:-}
work=$root/target/ordering-sweep
allow=$root/scripts/ordering-sweep.allow

# Sites: "file<TAB>line<TAB>occurrence<TAB>from<TAB>to" for every ordering stronger
# than Relaxed in code (not in comments).
sites() {
  local f
  for f in $files; do
    awk -v file="$f" '
      {
        code = $0
        sub(/\/\/.*/, "", code)             # drop comments
        k = 0
        while (match(code, /Ordering::(Acquire|Release|AcqRel|SeqCst)/)) {
          k++
          from = substr(code, RSTART + 10, RLENGTH - 10)
          if (from == "AcqRel") {
            print file "\t" NR "\t" k "\tAcqRel\tAcquire"
            print file "\t" NR "\t" k "\tAcqRel\tRelease"
          } else if (from == "SeqCst" && code ~ /fence\(/) {
            print file "\t" NR "\t" k "\tSeqCst\tAcqRel"
          } else {
            print file "\t" NR "\t" k "\t" from "\tRelaxed"
          }
          code = substr(code, RSTART + RLENGTH)
        }
      }' "$srcdir/$f"
  done
}

# A site's source line (trimmed) and the function it is in (the last `fn name`
# above it), read from the unmutated file $1 in $srcdir; its allow-list key is
# file|function|source line|occurrence|weaker ordering.
line_of() { sed -n "${2}p" "$srcdir/$1" | sed 's/^[[:space:]]*//'; }
func_of() {
  awk -v n="$2" 'NR <= n && match($0, /fn [A-Za-z0-9_]+/) { f = substr($0, RSTART + 3, RLENGTH - 3) } NR == n { print f; exit }' "$srcdir/$1"
}
key_of() { # file line occurrence to
  printf '%s|%s|%s|%s|%s\n' "$1" "$(func_of "$1" "$2")" "$(line_of "$1" "$2")" "$3" "$4"
}

# With SWEEP_SINCE, the keys of every site at that commit: those sites were
# swept then (or listed), and are skipped.
since_keys=
if [[ -n ${SWEEP_SINCE:-} ]]; then
  since_keys=$(mktemp)
  trap 'rm -f "$since_keys"' EXIT
  since_dir=$(mktemp -d)
  git archive "$SWEEP_SINCE" crates/ring/src | tar -x -C "$since_dir"
  (
    srcdir=$since_dir/crates/ring/src
    sites | while IFS=$'\t' read -r f line k _ to; do key_of "$f" "$line" "$k" "$to"; done
  ) >"$since_keys"
  rm -rf "$since_dir"
fi

if [[ -n ${SWEEP_LIST:-} ]]; then
  srcdir=crates/ring/src
  sites | while IFS=$'\t' read -r f line k from to; do
    if [[ -z $since_keys ]] || ! grep -qxF -- "$(key_of "$f" "$line" "$k" "$to")" "$since_keys"; then
      printf '%s\t%s\t%s\t%s\t%s\n' "$f" "$line" "$k" "$from" "$to"
    fi
  done
  exit 0
fi

# A private copy of the tracked files (with uncommitted edits), so that mutating a
# file never touches the checkout; its own target directory, so that each mutant
# recompiles only shmq-ring and the loom test.
mkdir -p "$work"
exec 9>"$work/lock"
flock -n 9 || { echo "another ordering sweep is running in $work" >&2; exit 1; }
rm -rf "$work/src"
mkdir -p "$work/src"
git ls-files -z | tar --null -T - -cf - | tar -xmf - -C "$work/src"  # -m: new mtimes, so cargo rebuilds
# The pristine sources every mutant is made from (edits to the checkout during a
# sweep do not reach it).
rm -rf "$work/orig"
cp -r "$work/src/crates/ring/src" "$work/orig"
srcdir=$work/orig
export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS=2
export CARGO_TARGET_DIR=$work/target

run_models() { # the models' output to $1; status 0 if all pass, 124 on time-out
  (cd "$work/src" && timeout "$per_mutant_timeout" \
    cargo test -q -p shmq-ring --test loom --release -- $models >"$1" 2>&1)
}

echo "=== baseline: the unmutated models must pass"
if ! run_models "$work/baseline.log"; then
  echo "the loom models fail without any mutation: see $work/baseline.log" >&2
  exit 1
fi

results=$work/results.tsv
printf 'file\tline\toccurrence\tfrom\tto\toutcome\tfailed_models\tsource\tfunction\n' >"$results"
killed=0 survived=0 unexpected=0
while IFS=$'\t' read -r f line k from to; do
  key=$(key_of "$f" "$line" "$k" "$to")
  if [[ -n $since_keys ]] && grep -qxF -- "$key" "$since_keys"; then
    continue
  fi
  text=$(line_of "$f" "$line")
  func=$(func_of "$f" "$line")
  src=$work/src/crates/ring/src/$f
  cp "$srcdir/$f" "$src"
  # Replace the k-th ordering of this line (counting only the ones awk counted,
  # which is every one on a code line).
  awk -v n="$line" -v k="$k" -v from="$from" -v to="$to" '
    NR == n {
      out = ""; rest = $0; i = 0
      while (match(rest, /Ordering::(Acquire|Release|AcqRel|SeqCst)/)) {
        i++
        tok = substr(rest, RSTART, RLENGTH)
        if (i == k) tok = "Ordering::" to
        out = out substr(rest, 1, RSTART - 1) tok
        rest = substr(rest, RSTART + RLENGTH)
      }
      $0 = out rest
    }
    { print }' "$srcdir/$f" >"$src"
  log=$work/mutant.log
  rc=0
  run_models "$log" || rc=$?
  if ((rc == 0)); then
    outcome=survived
    failed=-
    if grep -qxF -- "$key" "$allow" 2>/dev/null; then
      outcome=survived-allowed
    else
      unexpected=$((unexpected + 1))
    fi
    survived=$((survived + 1))
  else
    if grep -q "^error\[E[0-9]*\]\|^error: could not compile" "$log"; then
      outcome=does-not-compile
      failed=-
    elif ((rc == 124)) || ! grep -q "test result" "$log"; then
      outcome=killed-timeout
      failed=-
    else
      outcome=killed
      failed=$(grep -o '^[a-z0-9_:]* --- FAILED' "$log" | awk '{print $1}' | sort -u | paste -sd, -)
      [[ -n $failed ]] || failed="(panicked)"
    fi
    killed=$((killed + 1))
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$f" "$line" "$k" "$from" "$to" "$outcome" "$failed" "$text" "$func" >>"$results"
  printf '%-9s %5s %-22s %-7s -> %-7s %-17s %s\n' "$f" "$line" "$func" "$from" "$to" "$outcome" "$failed"
  cp "$srcdir/$f" "$src"
done < <(sites)

echo
echo "killed $killed, survived $survived ($unexpected not in $(basename "$allow")); table: $results"
if ((unexpected > 0)); then
  echo "survivors not in the allow list (add them with a reason, or add a model that catches them):"
  awk -F'\t' '$6 == "survived" { print $1 "|" $9 "|" $8 "|" $3 "|" $5 }' "$results"
  exit 1
fi
