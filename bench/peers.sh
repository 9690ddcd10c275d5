#!/usr/bin/env bash
# The peers' cases of BENCHMARKS.md, as run on 2026-11-25: copies ../shared/peers/{river,dbos,goworkflows}
# to /tmp, builds them and runs each headline case with 3 reps; results in /tmp/p-*/results/.
# Durably TS (in a copy of ../shared/peers/durably-ts, after npm ci):
#   node run-all.mjs --reps 3 --backends sqlite,pg --cases "enqueue-single;enqueue-batch;process:conc=1;process:conc=8;latency:poll=10;labels"
#   node run-all.mjs --reps 3 --backends sqlite --cases http && node summarize.mjs > results/summary.md
set -u
P="${PEERS:-$(cd "$(dirname "$0")/../../shared/peers" && pwd)}"
for x in river dbos goworkflows; do
  rm -rf /tmp/p-$x; cp -r $P/$x /tmp/p-$x; chmod -R u+w /tmp/p-$x
  rm -rf /tmp/p-$x/results; mkdir -p /tmp/p-$x/results /tmp/p-$x/data /tmp/p-$x/tmp /tmp/p-$x/.data
done
echo "start $(date -u +%T)"
cd /tmp/p-river && go build -o riverbench . || echo "river build failed"
for db in "sqlite:/tmp/p-river/data/river_bench.db" "postgres://postgres@127.0.0.1:5432/river_bench?sslmode=disable"; do
  for args in "-workload enqueue" "-workload enqueue-batch" "-workload process-fast -slots 8" "-workload process-fast -slots 1" \
              "-workload process-fast -slots 8 -steps resumable-tx" "-workload process-fast -slots 1 -steps resumable-tx" "-workload latency-fast"; do
    echo "river $(date -u +%T) $db $args"
    ./riverbench -db "$db" $args -reps 3 -json >> results/raw.jsonl || echo "FAIL river $db $args"
  done
done
./riverbench -summarize results/raw.jsonl > results/summary.md
cd /tmp/p-dbos && go build -o dbosbench . && go build -tags sqlite -o dbosbench-sqlite . || echo "dbos build failed"
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
for args in "-workload enqueue -n 5000" "-workload enqueue-tx -n 5000 -batch 500" "-workload process -n 5000 -slots 8 -poll 1ms" \
            "-workload process -n 5000 -slots 1 -poll 1ms" "-workload latency -n 200 -poll 1ms"; do
  for rep in 1 2 3; do
    echo "dbos-pg $(date -u +%T) $args rep $rep"
    ./dbosbench -pg postgres://postgres@127.0.0.1:5432 -json -run-id "$RUN_ID" -first-rep $rep $args >> results/raw.jsonl || echo "FAIL dbos pg $args"
    for sync in dbos FULL; do
      echo "dbos-sqlite-$sync $(date -u +%T) $args rep $rep"
      ./dbosbench-sqlite -sqlite tmp/dbosbench.db -sqlite-sync $sync -json -run-id "$RUN_ID" -first-rep $rep $args >> results/raw-sqlite.jsonl || echo "FAIL dbos sqlite $sync $args"
      rm -f tmp/dbosbench.db*
    done
  done
done
./dbosbench -summarize results/raw.jsonl -run-id "$RUN_ID" > results/summary.md
./dbosbench-sqlite -summarize results/raw-sqlite.jsonl -run-id "$RUN_ID" > results/summary-sqlite.md
cd /tmp/p-goworkflows && go build -o gwbench . || echo "gw build failed"
for args in "-workload enqueue -n 5000" "-workload process -n 5000 -slots 8" "-workload process -n 5000 -slots 1" "-workload latency -n 200 -mono" "-workload latency -n 200 -poll 0"; do
  echo "gw $(date -u +%T) $args"
  ./gwbench -db sqlite:.data/gw.db -reps 3 -json $args >> results/raw.jsonl || echo "FAIL gw $args"
done
./gwbench -summarize results/raw.jsonl > results/summary.md 2>&1 || true
echo "end $(date -u +%T)"
