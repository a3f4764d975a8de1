#!/usr/bin/env bash
# The cost of the file sink's durability (group commit: flush + fsync before the acks), measured
# against the same sink with `fsync = false` (flushed to the OS before the acks) in the same run:
#   1. throughput: N (default 200,000) seed-004 property posts through the file source, the
#      sample rules of rules/ and the file sink; wall time and CPU time of each run;
#   2. MQTT: M (default 300) integration requests of one entry, published back to back by
#      mosquitto_pub (QoS 1), each answered after its group commit; the time to all replies, the
#      group commit time from the sink's histogram (sluice_file_sink_sync_seconds) and the
#      requests per group commit.
# Prints both, with ratios. Usage: bench/file_sink_sync.sh [N] [M]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200000}"
M="${2:-300}"
cargo build --release --locked --bin sluice >/dev/null 2>&1 || cargo build --release --locked --bin sluice
SLUICE="$PWD/target/release/sluice"
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
. bench/common.sh
bench_workdir sync-bench

# ---- 1. throughput through the file source ---------------------------------------------------
python3 - "$N" >"$WORK/in.jsonl" <<'PY'
import json, sys
n = int(sys.argv[1])
for i in range(n):
    post = {"iotId": "4z819VQHk6VSLmmBJfrf00107ee200", "productKey": "1234556554", "deviceName": f"dev{i % 1000}",
            "gmtCreate": 1510799670074 + i, "deviceType": "Ammeter",
            "items": {"Power": {"value": "on", "time": 1510799670074}, "Position": {"time": 1510292697470, "value": {"latitude": 39.9, "longitude": 116.38}}}}
    print(json.dumps({"topic": f"/sys/1234556554/dev{i % 1000}/thing/event/property/post", "payload": post}, separators=(",", ":")))
PY
run_file() { # fsync → "wall cpu"
    cat >"$WORK/file-$1.toml" <<EOF
[rules]
paths = ["$PWD/rules"]
watch = false
[[sources]]
type = "file"
path = "$WORK/in.jsonl"
[sink]
type = "file"
dir = "$WORK/out-$1"
fsync = $1
EOF
    /usr/bin/time -f "%e %U %S" -o "$WORK/time-$1" "$SLUICE" run --config "$WORK/file-$1.toml" >/dev/null 2>"$WORK/log-$1"
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$WORK/time-$1"
}
read -r wall_t cpu_t < <(run_file true)
read -r wall_f cpu_f < <(run_file false)
echo "file source -> rules/ -> file sink, $N property posts:"
awk -v n="$N" -v wt="$wall_t" -v ct="$cpu_t" -v wf="$wall_f" -v cf="$cpu_f" 'BEGIN {
    printf "  fsync = true : %6.2f s wall, %6.2f CPU-s, %8.0f msg/s, %5.2f us CPU/msg\n", wt, ct, n / wt, ct * 1e6 / n;
    printf "  fsync = false: %6.2f s wall, %6.2f CPU-s, %8.0f msg/s, %5.2f us CPU/msg\n", wf, cf, n / wf, cf * 1e6 / n;
    printf "  ratio (fsync true / false): wall %.2f, CPU %.2f\n", wt / wf, ct / cf }'

# ---- 2. MQTT requests ---------------------------------------------------------------------------
MQTT_PORT="$(free_port)"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_PORT" >"$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break; sleep 0.1; done
python3 - "$M" >"$WORK/requests.txt" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"id": str(i), "version": "1.0", "method": "integration.measurepoint.post",
                      "params": [{"deviceKey": f"device{i % 10}", "measurepoints": {"temp": i}, "time": 1700000000000 + i}]}, separators=(",", ":")))
PY
run_mqtt() { # fsync → "groups sync_s requests wall"
    local admin; admin="$(free_port)"
    cat >"$WORK/mqtt-$1.toml" <<EOF
[rules]
paths = ["$PWD/rules/integration_measurepoint.toml"]
watch = false
[[sources]]
type = "mqtt"
url = "mqtt://127.0.0.1:$MQTT_PORT"
client_id = "sluice-sync-bench-$1"
clean_session = true
decoders_dir = "$PWD/decoders"
[sink]
type = "file"
dir = "$WORK/mqtt-out-$1"
fsync = $1
[admin]
listen = "127.0.0.1:$admin"
EOF
    "$SLUICE" run --config "$WORK/mqtt-$1.toml" >/dev/null 2>"$WORK/mqtt-log-$1" &
    local pid=$!
    PIDS+=($pid)
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
    local start end
    start=$(date +%s.%N)
    # One request per publish, QoS 1; replies counted by a subscriber that exits after M.
    timeout 120 mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t 'sys/+/integration/+/post_reply' -C "$M" >"$WORK/replies-$1" &
    local sub=$!
    sleep 0.5
    mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t sys/pkS/integration/measurepoint/post -l <"$WORK/requests.txt"
    wait "$sub"
    end=$(date +%s.%N)
    local metrics; metrics="$(curl -sf "http://127.0.0.1:$admin/metrics")"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    local groups sum
    groups="$(awk '/^sluice_file_sink_sync_seconds_count/ { print $2 }' <<<"$metrics")"
    sum="$(awk '/^sluice_file_sink_sync_seconds_sum/ { print $2 }' <<<"$metrics")"
    echo "$groups $sum $(wc -l <"$WORK/replies-$1") $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')"
}
read -r groups_t sum_t replies_t wall_t < <(run_mqtt true)
read -r groups_f sum_f replies_f wall_f < <(run_mqtt false)
echo "MQTT integration requests -> file sink, $M requests of one entry, published back to back:"
awk -v m="$M" -v gt="$groups_t" -v st="$sum_t" -v rt="$replies_t" -v wt="$wall_t" -v gf="$groups_f" -v sf="$sum_f" -v rf="$replies_f" -v wf="$wall_f" 'BEGIN {
    printf "  fsync = true : %d replies in %.2f s, %d group commits (%.2f requests each), %.3f ms per commit\n", rt, wt, gt, m / gt, st * 1e3 / gt;
    printf "  fsync = false: %d replies in %.2f s, %d group commits (%.2f requests each), %.3f ms per commit\n", rf, wf, gf, m / gf, sf * 1e3 / gf;
    printf "  ratio of commit time (fsync true / false): %.1f\n", (st / gt) / (sf / gf) }'
