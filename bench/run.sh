#!/usr/bin/env bash
# The full durably-go benchmark: every workload of BENCHMARKS.md on both
# stores, REPS repetitions each, one at a time. Appends JSON lines to
# bench/results/durably-go.jsonl and prints the markdown table.
#
#   bench/run.sh                       # REPS=3, the workloads' default N
#   REPS=1 bench/run.sh                # quicker
#   PG=postgres://… bench/run.sh       # another PostgreSQL
#
# Run nothing else meanwhile: the machine's cores are part of the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-3}"
PG="${PG:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
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
