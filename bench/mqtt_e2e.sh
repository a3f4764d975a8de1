#!/usr/bin/env bash
# End-to-end benchmark of the MQTT integration channel (issue 12): N (default 50,000) measure
# point requests of two entries each (seed 003's format, distinct devices and times) published
# at QoS 1 by bench/mqtt_load.rs (Rust, rumqttc: the client Sluice uses), at most WINDOW
# (default 256) without a reply, to a Mosquitto this script starts; Sluice runs the sample rules
# of rules/ with the device registry of models/ (plus the DEVICES bench devices) and answers
# each request once its two records are durable:
#   0. the ceiling: the same payloads at QoS 1 to a topic nobody reads (publisher + broker);
#   1. the file sink (fsync on, the default);
#   2. the Kafka sink, to a tansu broker this script starts (sqlite storage).
# Each run waits on state: Sluice's /readyz, then the publisher's probe request answered, then
# N replies with code 200; then the output topic must hold 2N records. CPU is read from
# /proc/PID/stat (user + system) before and after the timed part; one table compares the runs,
# and Sluice's CPU per thread (grouped by thread name) is printed after each sink's run.
#
# Usage: [SINKS="file kafka"] [WINDOW=256] [CONNECTIONS=1] [WORKERS=1] [DEVICES=1000]
#        [PARTITIONS=4] [RUST_LOG=info] [PERF_DIR=dir] [PROFILE=release] [KEEP=1]
#        [FILE_SINK_EXTRA='fsync = false'] [KAFKA_SINK_EXTRA='idempotence = false']
#        [MOSQUITTO_NODELAY=true] [MOSQUITTO_EXTRA='…'] bench/mqtt_e2e.sh [N]
# *_EXTRA: lines added to the [sink] table of that sink's run, or to mosquitto.conf;
# SLUICE_ENV: VAR=value words in Sluice's environment.
# SYSCALLS=1: Sluice's system calls per request during the timed part (perf stat tracepoints).
# PERF_DIR: `perf record` Sluice during each sink's timed part into PERF_DIR/perf-<sink>.data
# (software clock samples, the VM exposes no CPU counters; PERF_CALL_GRAPH, default
# `dwarf,16384`; PERF_FREQ, default 499 Hz).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-50000}"
SINKS="${SINKS:-file kafka}"
WINDOW="${WINDOW:-256}"
CONNECTIONS="${CONNECTIONS:-1}"
WORKERS="${WORKERS:-1}"
DEVICES="${DEVICES:-1000}"
PARTITIONS="${PARTITIONS:-4}"
export RUST_LOG="${RUST_LOG:-info}"
TIMEOUT=600

TANSU="${SLUICE_TANSU:-$HOME/.cache/sluice/tools/bin/tansu}"
if [[ " $SINKS " == *" kafka "* ]] && [ ! -x "$TANSU" ]; then
    bash scripts/test-deps.sh >/dev/null
fi
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
# PROFILE=dev measures a debug build (quicker to build, for checking the script).
. bench/common.sh
bench_build --example mqtt_load --example kafka_copy
LOAD="$OUT/examples/mqtt_load"
KTOOL="$OUT/examples/kafka_copy"

bench_workdir mqtt-bench

hz="$(getconf CLK_TCK)"
# CPU seconds (user + system) a process has used so far (fields after the command name, which
# may hold spaces).
cpu_s() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }' || echo 0; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
# Per-thread CPU ticks of a process: "name ticks" lines.
threads() { for t in /proc/"$1"/task/*; do printf '%s %s\n' "$(tr ' ' '_' <"$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{ print $12 + $13 }')"; done 2>/dev/null; }

wait_port() { # port what
    for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "$2 did not open port $1" >&2; return 1
}
result() { sed -n 's/^RESULT //p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# ---- Mosquitto --------------------------------------------------------------------------------
MQTT_PORT="$(free_port)"
# Bursts are not dropped: Sluice acknowledges a request only after its reply, so every request
# in the window is in flight to Sluice at once (the default is 20 in flight, 1,000 queued).
# TCP_NODELAY on the broker's sockets (MOSQUITTO_NODELAY=false for Mosquitto's default): with
# Nagle's algorithm each request/reply round trip waits on delayed ACKs (44 ms per request at
# WINDOW=1 against 0.4 ms; about half the throughput at WINDOW=256).
cat >"$WORK/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay ${MOSQUITTO_NODELAY:-true}
max_inflight_messages 0
max_queued_messages 1000000
max_queued_bytes 0
${MOSQUITTO_EXTRA:-}
CONF
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
MPID=$!
PIDS+=($MPID)
wait_port "$MQTT_PORT" mosquitto

# ---- registry: models/ plus the bench devices --------------------------------------------------
cp -r models "$WORK/models"
"$LOAD" devices --count "$DEVICES" --product productKey1 >>"$WORK/models/devices.toml"

ROWS=()
THREADS_OUT=""
load_args=(--port "$MQTT_PORT" --count "$N" --window "$WINDOW" --connections "$CONNECTIONS" --devices "$DEVICES" --timeout-s "$TIMEOUT")

# ---- 0. the ceiling: QoS 1 to an unread topic ---------------------------------------------------
echo "== ceiling: $N QoS 1 messages to an unread topic (window $WINDOW)"
M0=$(cpu_s "$MPID")
"$LOAD" ceiling "${load_args[@]}" | tee "$WORK/ceiling.out"
ROWS+=("$(printf 'ceiling (unread topic)|%s|-|-|-|%s|%s|-|-' "$(result "$WORK/ceiling.out" rate)" "$(sub "$(cpu_s "$MPID")" "$M0")" "$(result "$WORK/ceiling.out" cpu_s)")")

# ---- tansu, for the Kafka sink -----------------------------------------------------------------
TPID=""
if [[ " $SINKS " == *" kafka "* ]]; then
    KPORT="$(free_port)"
    B="127.0.0.1:$KPORT"
    (cd "$WORK" && exec env RUST_LOG=warn "$TANSU" broker --listener-url "tcp://$B" --advertised-listener-url "tcp://$B" --storage-engine sqlite://tansu.db >tansu.log 2>&1) &
    TPID=$!
    PIDS+=($TPID)
    "$KTOOL" create "$B" "iot-integration-measurepoint:$PARTITIONS" "sluice-errors:1"
    # tansu 0.6 has no index on record headers (see bench/kafka_e2e.sh).
    sqlite3 -cmd ".timeout 10000" "$WORK/tansu.db" "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);"
fi

# ---- 1, 2. Sluice, per sink --------------------------------------------------------------------
for sink in $SINKS; do
    ADMIN="$(free_port)"
    case "$sink" in
        file) sink_conf="type = \"file\"
dir = \"$WORK/out-file\"
${FILE_SINK_EXTRA:-}" ;;
        kafka) sink_conf="type = \"kafka\"
brokers = \"$B\"
${KAFKA_SINK_EXTRA:-}" ;;
        *) echo "unknown sink $sink (file or kafka)" >&2; exit 2 ;;
    esac
    cat >"$WORK/sluice-$sink.toml" <<CONF
[rules]
paths = ["$PWD/rules"]
watch = false

[engine]
workers = $WORKERS

[[sources]]
type = "mqtt"
url = "mqtt://127.0.0.1:$MQTT_PORT"
client_id = "sluice-mqtt-bench-$sink"
clean_session = true
decoders_dir = "$PWD/decoders"

[registry]
models = "$WORK/models"

[sink]
$sink_conf

[admin]
listen = "127.0.0.1:$ADMIN"
CONF
    echo "== sluice, $sink sink: $N requests of 2 entries (window $WINDOW, $CONNECTIONS connection(s), $WORKERS worker(s), RUST_LOG=$RUST_LOG)"
    # shellcheck disable=SC2086 # SLUICE_ENV: VAR=value words
    env ${SLUICE_ENV:-} "$SLUICE" run --config "$WORK/sluice-$sink.toml" >"$WORK/sluice-$sink.out" 2>"$WORK/sluice-$sink.log" &
    SPID=$!
    PIDS+=($SPID)
    ready=""
    for _ in $(seq 600); do
        if curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1; then ready=1; break; fi
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$ready" ]; then echo "sluice ($sink) not ready:" >&2; tail -20 "$WORK/sluice-$sink.log" >&2; exit 1; fi

    threads "$SPID" >"$WORK/threads0-$sink"
    S0=$(cpu_s "$SPID"); M0=$(cpu_s "$MPID"); T0=0
    [ -n "$TPID" ] && T0=$(cpu_s "$TPID")
    PERF_PID=""
    if [ -n "${PERF_DIR:-}" ]; then
        mkdir -p "$PERF_DIR"
        perf record -e cpu-clock -F "${PERF_FREQ:-499}" --call-graph "${PERF_CALL_GRAPH:-dwarf,16384}" -p "$SPID" -o "$PERF_DIR/perf-$sink.data" >"$WORK/perf-$sink.log" 2>&1 &
        PERF_PID=$!
        PIDS+=($PERF_PID)
        sleep 1 # perf attaches to every thread first
    fi
    STAT_PID=""
    SYSCALLS_OUT=""
    if [ -n "${SYSCALLS:-}" ]; then
        events=""
        for sc in recvfrom writev write futex epoll_wait fdatasync sendto sendmsg poll; do events+="${events:+,}syscalls:sys_enter_$sc"; done
        perf stat -x, -e "$events" -p "$SPID" -o "$WORK/syscalls-$sink.csv" >/dev/null 2>&1 &
        STAT_PID=$!
        PIDS+=($STAT_PID)
        sleep 0.5
    fi
    status=0
    "$LOAD" requests "${load_args[@]}" | tee "$WORK/$sink.out" || status=$?
    S1=$(cpu_s "$SPID"); M1=$(cpu_s "$MPID"); T1=0
    [ -n "$TPID" ] && T1=$(cpu_s "$TPID")
    threads "$SPID" >"$WORK/threads1-$sink"
    if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
    if [ -n "$STAT_PID" ]; then
        kill -INT "$STAT_PID"; wait "$STAT_PID" || true
        SYSCALLS_OUT=$'\n'"Sluice's system calls, $sink sink (per request):"$'\n'
        SYSCALLS_OUT+="$(awk -F, -v n="$N" '$3 ~ /sys_enter_/ && $1 + 0 > 0 { sub(".*sys_enter_", "", $3); printf "  %-18s %6.2f\n", $3, $1 / n }' "$WORK/syscalls-$sink.csv" | sort -k2 -nr)"
    fi
    if [ "$status" -ne 0 ]; then echo "the publisher failed ($sink sink); Sluice's log:" >&2; tail -20 "$WORK/sluice-$sink.log" >&2; exit 1; fi

    # Every reply came after its records were durable: the output must hold them all.
    want=$(( 2 * N ))
    if [ "$sink" = file ]; then
        got=$(wc -l <"$WORK/out-file/iot-integration-measurepoint.jsonl")
        [ "$got" -eq "$want" ] || { echo "file sink holds $got records, want $want" >&2; exit 1; }
    else
        "$KTOOL" wait "$B" iot-integration-measurepoint "$want" 60 >/dev/null
    fi
    echo "   output: $want records on iot-integration-measurepoint"

    S=$(sub "$S1" "$S0")
    rate=$(result "$WORK/$sink.out" rate)
    tansu="-"
    [ "$sink" = kafka ] && tansu=$(sub "$T1" "$T0")
    ROWS+=("$(printf '%s sink|%s|%s|%s|%s|%s|%s|%s|%s / %s' "$sink" "$rate" "$(awk -v r="$rate" 'BEGIN { printf "%.0f", 2 * r }')" "$S" \
        "$(awk -v c="$S" -v n="$N" 'BEGIN { printf "%.1f", c * 1e6 / n }')" "$(sub "$M1" "$M0")" "$(result "$WORK/$sink.out" cpu_s)" "$tansu" \
        "$(result "$WORK/$sink.out" p50_ms)" "$(result "$WORK/$sink.out" p99_ms)")")
    # Sluice's CPU per thread name over the timed part.
    THREADS_OUT+=$'\n'"Sluice's threads, $sink sink (name, CPU-s, µs/request):"$'\n'
    THREADS_OUT+="$(awk -v hz="$hz" -v n="$N" 'NR == FNR { a[$1] += $2; next } { b[$1] += $2 } END {
        for (k in b) { d = (b[k] - a[k]) / hz; if (d > 0) printf "  %-18s %6.2f  %5.1f\n", k, d, d * 1e6 / n } }' "$WORK/threads0-$sink" "$WORK/threads1-$sink" | sort -k2 -nr)"
    THREADS_OUT+="$SYSCALLS_OUT"
    kill -TERM "$SPID"
    wait "$SPID" || true
done

echo
echo "MQTT integration channel, $N requests x 2 entries, QoS 1, window $WINDOW, $CONNECTIONS connection(s), $WORKERS worker(s), RUST_LOG=$RUST_LOG:"
{
    echo "run|requests/s|entries/s|Sluice CPU-s|Sluice µs/request|Mosquitto CPU-s|publisher CPU-s|tansu CPU-s|p50 / p99 ms"
    printf '%s\n' "${ROWS[@]}"
} | awk -F'|' '{ printf "| %-22s | %10s | %9s | %12s | %17s | %15s | %15s | %11s | %-13s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
echo "$THREADS_OUT"
