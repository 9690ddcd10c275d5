#!/usr/bin/env bash
# The durably-go benchmark.
#
# The full run: every workload of BENCHMARKS.md on both stores, REPS
# repetitions each, one at a time. Appends JSON lines to
# bench/results/durably-go.jsonl and prints the markdown table.
#
#   bench/run.sh                       # REPS=3, the workloads' default N
#   REPS=1 bench/run.sh                # quicker
#   PG=postgres://… bench/run.sh       # another PostgreSQL
#
# The comparison with an earlier commit (issue 24: every claimed gain is
# measured against the code before it, on the same machine, alternated):
#
#   bench/run.sh compare 'process -slots 8' 'latency -n 1000'
#   BASE=abc1234 ROUNDS=10 bench/run.sh compare 'process -slots 1'
#
# builds BASE's durably-bench (default HEAD~1, the parent commit; from
# `git archive`, so no worktree is registered; both builds -trimpath, so
# that the same code makes the same binary) beside this tree's, then for
# each case (a workload and its flags) and each store of STORES (default
# "sqlite pg") runs the two ROUNDS times (default 5) alternately, one
# repetition per call, each on a fresh database: before, after; then after,
# before in the next round, so that a drift of the machine weighs on both
# alike. BUDGET=seconds goes on with more rounds until that much time has
# passed for the case and store (ROUNDS is then the least). A first round
# of each is a warm-up, not counted (WARMUP=0 leaves it out). Flags BASE's
# build does not know are left out of both builds' runs (and named). It
# prints a before → after table of medians, with the ratio of the medians
# and the median of the paired ratios (each round's after ÷ before).
# GUARD='runs_per_s>=0.85' fails (exit 1) when a case's median paired ratio
# of that metric falls below the bound; with EXTEND=n, a case that fails it
# gets up to n more series of rounds (ROUNDS, BUDGET), after each of which
# the guard holds all the case's pairs together to the bound: a chance dip
# of one series does not fail, a real loss stays below. OUT=dir keeps the
# raw JSON lines.
#
# Run nothing else meanwhile: the machine's cores are part of the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
PG="${PG:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"

# flags_of prints the flags a durably-bench binary knows, one per line:
# the name, and "bool" or "value" (whether it takes a value).
flags_of() {
  "$1" -h 2>&1 | awk -F'\t' '/^  -/ { split($1, f, " "); print substr(f[1], 2), (f[2] == "" ? "bool" : "value") }'
}

# common_args sets COMMON to the arguments (after the flags tables of the
# base and of this build) that the base knows, each flag with its value.
common_args() {
  local base_flags="$1" new_flags="$2"
  shift 2
  COMMON=()
  while [ $# -gt 0 ]; do
    local arg="$1" name value=() inline=0
    shift
    name="${arg#-}"
    name="${name#-}"
    case "$name" in *=*) name="${name%%=*}" inline=1 ;; esac
    if [ "$inline" = 0 ] && [ "$(awk -v n="$name" '$1 == n { print $2 }' "$new_flags")" = value ] && [ $# -gt 0 ]; then
      value=("$1")
      shift
    fi
    if [ -n "$(awk -v n="$name" '$1 == n { print $2 }' "$base_flags")" ]; then
      COMMON+=("$arg" "${value[@]}")
    else
      echo "compare: the base build knows no -$name: left out of both builds' runs" >&2
    fi
  done
}

# one runs a build once (-reps 1) and appends its repetition to a file.
one() {
  local bin="$1" out="$2" db="$3"
  shift 3
  if ! "$bin" -db "$db" -reps 1 -json "$@" >"$WORK/last.json" 2>"$WORK/last.err"; then
    cat "$WORK/last.err" "$WORK/last.json" >&2
    echo "compare: $bin failed on: $*" >&2
    exit 1
  fi
  grep '"type":"rep"' "$WORK/last.json" >>"$out"
}

# alternate runs the two builds round after round, as compare describes,
# appending their repetitions to $2.before and $2.after.
alternate() {
  local db="$1" out="$2" rounds="${ROUNDS:-5}" budget="${BUDGET:-0}" start round=1
  shift 2
  if [ "${WARMUP:-1}" != 0 ]; then
    one "$WORK/before" /dev/null "$db" "$@"
    one "$WORK/after" /dev/null "$db" "$@"
  fi
  start=$SECONDS
  while [ "$round" -le "$rounds" ] || [ $((SECONDS - start)) -lt "$budget" ]; do
    echo "== $(date -u +%H:%M:%S) ${*} round $round" >&2
    if [ $((round % 2)) = 1 ]; then
      one "$WORK/before" "$out.before" "$db" "$@"
      one "$WORK/after" "$out.after" "$db" "$@"
    else
      one "$WORK/after" "$out.after" "$db" "$@"
      one "$WORK/before" "$out.before" "$db" "$@"
    fi
    round=$((round + 1))
  done
}

# guard_holds reports whether the pairs so far hold GUARD (true without one).
guard_holds() {
  [ -z "${GUARD:-}" ] || "$WORK/after" -before "$1.before" -after "$1.after" -guard "$GUARD" >/dev/null 2>&1
}

compare() {
  local base_ref="${BASE:-HEAD~1}" stores="${STORES:-sqlite pg}" base failed=0
  [ $# -gt 0 ] || { echo "usage: [BASE=commit] [ROUNDS=n] [BUDGET=seconds] [STORES='sqlite pg'] [GUARD='metric>=ratio' [EXTEND=n]] bench/run.sh compare 'workload [flags]'…" >&2; exit 2; }
  base="$(git rev-parse --verify --quiet "$base_ref^{commit}")" || { echo "compare: BASE=$base_ref is no commit here" >&2; exit 2; }
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  mkdir "$WORK/src"
  git archive "$base" | tar -x -C "$WORK/src"
  echo "compare: building ${base:0:12} ($base_ref) and this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . && echo '' || echo ' with changes'))" >&2
  (cd "$WORK/src" && go build -trimpath -o "$WORK/before" ./cmd/durably-bench)
  go build -trimpath -o "$WORK/after" ./cmd/durably-bench
  flags_of "$WORK/before" >"$WORK/before.flags"
  flags_of "$WORK/after" >"$WORK/after.flags"
  echo "compare: load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for case in "$@"; do
    read -r -a words <<<"$case"
    common_args "$WORK/before.flags" "$WORK/after.flags" -workload "${words[@]}"
    for store in $stores; do
      local db="$WORK/bench.db" tag
      [ "$store" = pg ] && db="$PG"
      tag="$(echo "$store ${COMMON[*]}" | tr -c 'A-Za-z0-9\n' '_')"
      : >"$WORK/$tag.before"
      : >"$WORK/$tag.after"
      alternate "$db" "$WORK/$tag" "${COMMON[@]}"
      local looks=0
      while [ "$looks" -lt "${EXTEND:-0}" ] && ! guard_holds "$WORK/$tag"; do
        looks=$((looks + 1))
        echo "compare: $GUARD fails after $(wc -l <"$WORK/$tag.after") rounds: as many again, then all of them together (extension $looks of $EXTEND)" >&2
        WARMUP=0 alternate "$db" "$WORK/$tag" "${COMMON[@]}"
      done
      echo
      echo "### $store: ${COMMON[*]}, $(wc -l <"$WORK/$tag.after") alternated rounds"
      echo
      "$WORK/after" -before "$WORK/$tag.before" -after "$WORK/$tag.after" \
        -before-name "before (${base:0:7})" -after-name "after ($(git rev-parse --short HEAD))" ${GUARD:+-guard "$GUARD"} || failed=1
      if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT"
        cp "$WORK/$tag.before" "$OUT/$tag.before.jsonl"
        cp "$WORK/$tag.after" "$OUT/$tag.after.jsonl"
      fi
    done
  done
  echo "compare: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  return "$failed"
}

if [ "${1:-}" = compare ]; then
  shift
  compare "$@"
  exit
fi

REPS="${REPS:-3}"
SQLITE="${SQLITE:-$(mktemp -d)/durably-bench.db}"
OUT="${OUT:-bench/results/durably-go.jsonl}"
mkdir -p "$(dirname "$OUT")"
go build -o /tmp/durably-bench ./cmd/durably-bench

run() {
  echo "== $(date -u +%H:%M:%S) $*" >&2
  /tmp/durably-bench -reps "$REPS" -json "$@" | tee -a "$OUT" | grep '"type":"summary"' >/dev/null
}

for db in "$SQLITE" "$PG"; do
  run -db "$db" -workload enqueue
  run -db "$db" -workload enqueue-batch
  run -db "$db" -workload enqueue-tx
  run -db "$db" -workload process -slots 8
  run -db "$db" -workload process -slots 1
  run -db "$db" -workload latency
  run -db "$db" -workload list
  run -db "$db" -workload http
  run -db "$db" -workload sse
  # N processes of one slot over runs of 1–3 s: about 1/N of one's time.
  # One repetition: it holds N = 1, 2 and 4 (about 2.5 minutes).
  run -db "$db" -workload scaleout -procs 4 -reps 1
done
# How PostgreSQL throughput scales with processes (4 slots each), and one
# process of 8 slots for comparison.
for p in 1 2 4; do run -db "$PG" -workload multi -procs $p -slots 4; done
run -db "$PG" -workload multi -procs 1 -slots 8
# Not headline figures: write lanes, more slots, and SQLite with
# synchronous=NORMAL (not durable against power loss).
run -db "$PG" -workload process -slots 8 -pg-write-lanes 2
run -db "$PG" -workload process -slots 32
run -db "$SQLITE" -workload process -slots 8 -sqlite-synchronous NORMAL
run -db "$SQLITE" -workload latency -sqlite-synchronous NORMAL
/tmp/durably-bench -summarize "$OUT"
