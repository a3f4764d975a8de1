#!/usr/bin/env bash
# End-to-end Kafka benchmark: N (default 1,000,000) property posts of about 300 bytes
# (`/sys/{pk}/{dn}/thing/event/property/post` in the `iot-topic` header, seed 004's payload)
# are produced to a fresh tansu broker; then, timed the same way (from process start until the
# output topic holds N records):
#   1. sluice: Kafka source -> 10 rules (each record passes exactly one WHERE) -> Kafka sink;
#   2. the broker's ceiling: a plain consume-and-produce copy with no rules
#      (bench/kafka_copy.rs, same producer settings as Sluice's sink).
# Prints both rates, their ratio and each process's CPU per message. KEYED=1 produces the input
# keyed by device name (as real upstreams do), else unkeyed.
# Usage: [PROFILE=dev] [KEYED=1] [PARTITIONS=8] [WORKERS=2] bench/kafka_e2e.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
PARTITIONS="${PARTITIONS:-8}"
WORKERS="${WORKERS:-2}"

bash scripts/test-deps.sh >/dev/null
TANSU="${SLUICE_TANSU:-$HOME/.cache/sluice/tools/bin/tansu}"
# PROFILE=dev measures a debug build (quicker to build, for checking the script).
PROFILE="${PROFILE:-release}"
cargo build --profile "$PROFILE" --locked --bin sluice --example kafka_copy
OUT="$PWD/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
SLUICE="$OUT/sluice"
TOOL="$OUT/examples/kafka_copy"

WORK="$(mktemp -d /tmp/sluice-bench-XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo "?"; }

# A free port for the broker: pick at random until nothing answers on it.
PORT=$(( 20000 + RANDOM % 20000 ))
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    PORT=$(( 20000 + RANDOM % 20000 ))
done
B="127.0.0.1:$PORT"
(cd "$WORK" && exec env RUST_LOG=warn "$TANSU" broker --listener-url "tcp://$B" --advertised-listener-url "tcp://$B" --storage-engine sqlite://tansu.db >tansu.log 2>&1) &
TPID=$!
PIDS+=($TPID)
"$TOOL" create "$B" "bench-in:$PARTITIONS" "bench-out:$PARTITIONS" "copy-out:$PARTITIONS" "sluice-errors:1"
# tansu 0.6 has no index on record headers (every fetched record would scan them all).
sqlite3 -cmd ".timeout 10000" "$WORK/tansu.db" "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);"

echo "== producing $N records to bench-in ($PARTITIONS partitions)"
"$TOOL" produce "$B" bench-in "$N"

mkdir -p "$WORK/rules"
for i in $(seq 0 9); do
    cat >"$WORK/rules/band$i.toml" <<RULE
name = "temp-band-$i"
sql = """SELECT deviceName() AS dn, items.temp.value AS temp, items.Power.value AS power, items.Position.value.latitude AS lat, gmtCreate AS ts FROM "/sys/+/+/thing/event/property/post" WHERE items.temp.value >= $((i * 10)) AND items.temp.value < $((i * 10 + 10))"""
[[actions]]
topic = "bench-out"
key = "\${dn}"
[actions.headers]
band = "$i"
RULE
done
cat >"$WORK/sluice.toml" <<CONF
[rules]
paths = ["$WORK/rules"]

[engine]
workers = $WORKERS

[[sources]]
type = "kafka"
brokers = "$B"
topics = ["bench-in"]
group_id = "bench-sluice"

[sink]
type = "kafka"
brokers = "$B"
CONF

echo "== sluice: bench-in -> 10 rules -> bench-out"
"$SLUICE" run --config "$WORK/sluice.toml" 2>"$WORK/sluice.log" &
SPID=$!
PIDS+=($SPID)
TANSU_CPU0=$(cpu_s "$TPID")
T_SLUICE=$("$TOOL" wait "$B" bench-out "$N" 3600)
S_CPU=$(cpu_s "$SPID")
echo "   sluice used $S_CPU CPU-s ($(awk -v c="$S_CPU" -v n="$N" 'BEGIN { printf "%.1f", c * 1e6 / n }') µs/msg), tansu $(awk -v a="$(cpu_s "$TPID")" -v b="$TANSU_CPU0" 'BEGIN { printf "%.1f", a - b }') CPU-s"
kill -TERM "$SPID"
wait "$SPID" || true

echo "== plain copy: bench-in -> copy-out"
"$TOOL" copy "$B" bench-in copy-out bench-copy "$N" &
CPID=$!
PIDS+=($CPID)
TANSU_CPU0=$(cpu_s "$TPID")
T_COPY=$("$TOOL" wait "$B" copy-out "$N" 3600)
echo "   tansu $(awk -v a="$(cpu_s "$TPID")" -v b="$TANSU_CPU0" 'BEGIN { printf "%.1f", a - b }') CPU-s"
wait "$CPID"

awk -v n="$N" -v ts="$T_SLUICE" -v tc="$T_COPY" -v w="$WORKERS" 'BEGIN {
    s = n / ts; c = n / tc;
    printf "sluice (10 rules, %d workers): %d records in %.1fs = %.0f msg/s\n", w, n, ts, s;
    printf "plain copy (no rules):        %d records in %.1fs = %.0f msg/s\n", n, tc, c;
    printf "ratio sluice/copy: %.2f\n", s / c;
}'
