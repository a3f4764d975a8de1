#!/usr/bin/env bash
# Memory with many rules: RSS of `sluice run` with N (default 1,000) rules loaded, idle (an MQTT
# source on a private Mosquitto, the file sink), read from /proc once /readyz answers ready,
# then again after one /metrics scrape (per-rule series for every rule).
# Usage: [PROFILE=dev] bench/rss_idle.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
. bench/common.sh
bench_build
bench_workdir rss
MQTT_PORT=$(free_port)
ADMIN_PORT=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$MQTT_PORT" >"$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/rules"
for i in $(seq 0 $((N - 1))); do
    cat >"$WORK/rules/r$i.toml" <<RULE
name = "r$i"
sql = """SELECT deviceName() AS dn, items.temp.value AS temp FROM "/sys/pk$((i % 50))/+/thing/event/property/post" WHERE items.temp.value > $i"""
[[actions]]
topic = "out-$((i % 10))"
key = "\${dn}"
RULE
done
cat >"$WORK/sluice.toml" <<CONF
[rules]
paths = ["$WORK/rules"]

[[sources]]
type = "mqtt"
url = "mqtt://127.0.0.1:$MQTT_PORT"
client_id = "rss-bench"

[sink]
type = "file"
dir = "$WORK/out"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
CONF
"$SLUICE" run --config "$WORK/sluice.toml" >"$WORK/sluice.log" 2>&1 &
SPID=$!
PIDS+=($SPID)
for _ in $(seq 1 300); do
    curl -sf "127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && break
    sleep 0.1
done
curl -sf "127.0.0.1:$ADMIN_PORT/readyz" | grep -q "$N rules loaded" || { echo "not ready:"; cat "$WORK/sluice.log"; exit 1; }
rss() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$SPID/status"; }
echo "$N rules, idle, ready: RSS $(rss) MB"
BYTES=$(curl -sf "127.0.0.1:$ADMIN_PORT/metrics" | wc -c)
echo "after one /metrics scrape ($BYTES bytes): RSS $(rss) MB"
