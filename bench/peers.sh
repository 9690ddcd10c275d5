#!/usr/bin/env bash
# The peers' cases of BENCHMARKS.md, as run on 2026-11-29 (02:31–02:57 UTC): copies
# ../shared/peers/{river,dbos,goworkflows,durably-ts} to /tmp, builds them and runs each
# headline case with 3 reps, one at a time. Raw output: $OUT (default /tmp/peers-out).
# Run nothing else meanwhile: the machine's two cores are part of every figure.
set -u
P="${PEERS:-$(cd "$(dirname "$0")/../../shared/peers" && pwd)}"
OUT="${OUT:-/tmp/peers-out}"
TAG="${TAG:-$(date -u +%Y%m%dT%H%M%SZ)}"
PGR='postgres://postgres@127.0.0.1:5432/river_bench?sslmode=disable'
mkdir -p "$OUT"
for x in river dbos goworkflows durably-ts; do
  rm -rf /tmp/peer-$x; cp -r "$P/$x" /tmp/peer-$x; chmod -R u+w /tmp/peer-$x
done
echo "start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"

cd /tmp/peer-river && mkdir -p data && go build -o riverbench . || echo "river build failed"
for db in "sqlite:./data/rb.db" "$PGR"; do
  for args in "-workload enqueue -n 5000" "-workload enqueue-batch -n 5000" \
              "-workload process-fast -n 5000 -slots 8" "-workload process-fast -n 5000 -slots 1" \
              "-workload process-fast -n 5000 -slots 8 -steps resumable-tx" "-workload process-fast -n 5000 -slots 1 -steps resumable-tx"; do
    echo "== river $(date -u +%T) $args ${db%%\?*}"
    ./riverbench -json -tag "$TAG" -reps 3 -db "$db" $args >> "$OUT/river.jsonl" || echo "FAILED river $args"
  done
  # River reports completions in batches every ~250 ms: 200 samples say all there is.
  ./riverbench -json -tag "$TAG" -reps 1 -db "$db" -workload latency-fast -n 200 -slots 8 >> "$OUT/river.jsonl" || echo "FAILED river latency"
done
./riverbench -summarize "$OUT/river.jsonl" -tag "$TAG" > "$OUT/river.md" 2>&1

cd /tmp/peer-dbos && go build -o dbosbench . && go build -tags sqlite -o dbosbench-sqlite . || echo "dbos build failed"
mkdir -p tmp
for args in "-workload enqueue -n 5000" "-workload enqueue-tx -n 5000 -batch 500" "-workload process -n 5000 -slots 8 -poll 1ms" \
            "-workload process -n 5000 -slots 1 -poll 1ms" "-workload latency -n 500 -poll 1ms"; do
  for rep in 1 2 3; do
    echo "== dbos pg $(date -u +%T) $args rep $rep"
    ./dbosbench -pg postgres://postgres@127.0.0.1:5432 -json -run-id "$TAG" -first-rep $rep $args >> "$OUT/dbos-pg.jsonl" || echo "FAILED dbos $args"
  done
done
./dbosbench -summarize "$OUT/dbos-pg.jsonl" -run-id "$TAG" > "$OUT/dbos-pg.md" 2>&1
for args in "-workload enqueue -n 5000" "-workload process -n 5000 -slots 8 -poll 1ms" "-workload process -n 5000 -slots 1 -poll 1ms" "-workload latency -n 500 -poll 1ms"; do
  for rep in 1 2 3; do
    for sync in FULL dbos; do
      echo "== dbos sqlite $sync $(date -u +%T) $args rep $rep"
      rm -f tmp/d.db*
      ./dbosbench-sqlite -sqlite tmp/d.db -sqlite-sync $sync -json -run-id "$TAG" -first-rep $rep $args >> "$OUT/dbos-sqlite.jsonl" || echo "FAILED dbos sqlite $args"
    done
  done
done
./dbosbench-sqlite -summarize "$OUT/dbos-sqlite.jsonl" -run-id "$TAG" > "$OUT/dbos-sqlite.md" 2>&1

cd /tmp/peer-goworkflows && go build -o gwbench . || echo "gw build failed"
for args in "-workload enqueue -n 5000" "-workload process -n 5000 -slots 8" "-workload process -n 2000 -slots 1" "-workload latency -n 1000 -mono"; do
  echo "== gw $(date -u +%T) $args"
  rm -f /tmp/gw.db*
  ./gwbench -reps 3 -json -db sqlite:/tmp/gw.db $args >> "$OUT/gw.jsonl" || echo "FAILED gw $args"
done

cd /tmp/peer-durably-ts && npm ci --no-audit --no-fund >/dev/null 2>&1 || echo "npm ci failed"
echo "== ts $(date -u +%T)"
node run-all.mjs --reps 3 --backends sqlite,pg --cases "enqueue-single;enqueue-batch;process:conc=1;process:conc=8;latency:poll=10" > "$OUT/ts.log" 2>&1 || echo "FAILED ts"
node summarize.mjs > "$OUT/ts.md" 2>&1
echo "done $(date -u +%T)"
