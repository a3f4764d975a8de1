#!/usr/bin/env bash
# End-to-end Kafka benchmark, everything in one run, one table at the end.
#
# N (default 200,000) property posts of about 300 bytes (`/sys/{pk}/{dn}/thing/event/property/post`
# in the `iot-topic` header, seed 004's payload) are produced, unkeyed and then keyed by device
# name (as real upstreams write them), to two brokers:
#   - tansu (sqlite storage), a real broker process, slow to write;
#   - librdkafka's mock cluster, hosted in-process by the helper (`kafka_copy mock`): a broker
#     that is not the bottleneck.
# On each, timed the same way (from process start until the output topic holds N records):
#   1. sluice: Kafka source -> 10 rules (each record passes exactly one WHERE) -> Kafka sink;
#   2. a plain consume-and-produce copy with no rules (bench/kafka_copy.rs, the same producer
#      settings as Sluice's sink).
# Each row: msg/s over the whole run and over its steady part (from the first output record:
# without the group join), the processor's own CPU per message (process CPU-s / N) and the
# broker's CPU-s during the run.
# Usage: [PROFILE=dev] [SHAPES="unkeyed keyed"] [BROKERS="tansu mock"] [PARTITIONS=8] [WORKERS=2]
#        bench/kafka_e2e.sh [N]
#        SINK_EXTRA='linger_ms = 20' adds lines to Sluice's [sink] table, SOURCE_EXTRA to its source.
#        RULES=band|single|window picks Sluice's rules (bench/common.sh bench_rules); STATE=1 adds
#        a [state] store.
#        PERF=/tmp/sluice.perf records Sluice under `perf record` (one file per row, the row's
#        label appended; its CPU figure then includes perf's sampling).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200000}"
PARTITIONS="${PARTITIONS:-8}"
WORKERS="${WORKERS:-2}"
SHAPES="${SHAPES:-unkeyed keyed}"
BROKERS="${BROKERS:-tansu mock}"

bash scripts/test-deps.sh >/dev/null
TANSU="${SLUICE_TANSU:-$HOME/.cache/sluice/tools/bin/tansu}"
# PROFILE=dev measures a debug build (quicker to build, for checking the script).
. bench/common.sh
bench_build --example kafka_copy
TOOL="$OUT/examples/kafka_copy"

bench_workdir bench

# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo "?"; }
TOPICS=("bench-in:$PARTITIONS" "bench-out:$PARTITIONS" "copy-out:$PARTITIONS" "bench-windows:$PARTITIONS" "sluice-errors:1")

bench_rules "$WORK/rules"

# Starts broker $1 (tansu | mock) in $2 (a folder); sets B (its address) and BPID.
start_broker() {
    mkdir -p "$2"
    if [ "$1" = tansu ]; then
        B="127.0.0.1:$(free_port)"
        (cd "$2" && exec env RUST_LOG=warn "$TANSU" broker --listener-url "tcp://$B" --advertised-listener-url "tcp://$B" --storage-engine sqlite://tansu.db >tansu.log 2>&1) &
        BPID=$!
        "$TOOL" create "$B" "${TOPICS[@]}"
        # tansu 0.6 has no index on record headers (every fetched record would scan them all).
        sqlite3 -cmd ".timeout 10000" "$2/tansu.db" "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);"
    else
        mkfifo "$2/hold"
        "$TOOL" mock "${TOPICS[@]}" <"$2/hold" >"$2/addr" &
        BPID=$!
        exec 9>"$2/hold" # the mock serves until this closes
        while [ ! -s "$2/addr" ]; do sleep 0.05; done
        B=$(head -1 "$2/addr")
    fi
    PIDS+=("$BPID")
}

# Runs processor $1 (sluice | copy) against broker B; appends a row to $WORK/rows.
run_one() {
    local what=$1 label=$2 out pid c0 t ts cpu bcpu rss
    c0=$(cpu_s "$BPID")
    if [ "$what" = sluice ]; then
        out=bench-out
        bench_sluice_config "$WORK/sluice.toml" "$B"
        "$SLUICE" run --config "$WORK/sluice.toml" 2>"$WORK/sluice-$label.log" &
    else
        out=copy-out
        "$TOOL" copy "$B" bench-in copy-out bench-copy "$N" >/dev/null &
    fi
    pid=$!
    PIDS+=("$pid")
    local perf_pid=""
    if [ -n "${PERF:-}" ] && [ "$what" = sluice ]; then
        perf record -q -F 1999 --call-graph dwarf,16384 -p "$pid" -o "$PERF.${label//[ ,]/}" 2>/dev/null &
        perf_pid=$!
    fi
    read -r t ts < <("$TOOL" wait "$B" "$out" "$N" 3600)
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    cpu=$(cpu_s "$pid")
    # RSS at the end of the run (kB).
    rss=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo "?")
    bcpu=$(awk -v a="$(cpu_s "$BPID")" -v b="$c0" 'BEGIN { printf "%.1f", a - b }')
    if [ "$what" = sluice ]; then kill -TERM "$pid"; fi
    wait "$pid" || true
    awk -v l="$label" -v w="$what" -v n="$N" -v t="$t" -v ts="$ts" -v c="$cpu" -v bc="$bcpu" -v rss="$rss" 'BEGIN {
        printf "| %s | %s | %.0f | %.0f | %.1f | %.1f | %s |\n", l, w, n / t, (ts > 0 ? n / ts : 0), c * 1e6 / n, bc, (rss == "?" ? "?" : sprintf("%.0f", rss / 1024))
    }' >>"$WORK/rows"
    echo "   $(tail -1 "$WORK/rows")"
}

: >"$WORK/rows"
for shape in $SHAPES; do
    for broker in $BROKERS; do
        echo "== $broker, $shape input: producing $N records"
        start_broker "$broker" "$WORK/$broker-$shape"
        if [ "$shape" = keyed ]; then KEYED=1 "$TOOL" produce "$B" bench-in "$N"; else KEYED=0 "$TOOL" produce "$B" bench-in "$N"; fi
        run_one sluice "$broker, $shape"
        run_one copy "$broker, $shape"
        kill -9 "$BPID" 2>/dev/null || true
        wait "$BPID" 2>/dev/null || true
        exec 9>&- 2>/dev/null || true
    done
done

echo
echo "$N records, 10 rules, $WORKERS workers, $PARTITIONS partitions, $(date -u +%Y-%m-%d), $(nproc) cores"
echo "| broker, input | processor | msg/s | msg/s steady | CPU µs/msg | broker CPU-s | peak RSS MB |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
cat "$WORK/rows"
