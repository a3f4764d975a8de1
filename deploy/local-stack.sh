#!/usr/bin/env bash
# A local Sluice stack to try it by hand:
#   - Mosquitto, the integration channel's MQTT broker;
#   - tansu, a Kafka-compatible broker (sqlite storage), with the topics the sample rules in
#     rules/ write to (templated topics such as iot-property-${productKey} for every product of
#     models/), the error topics and the input topic `iot-in`;
#   - Sluice (`sluice run`) with the sample rules, the registry of models/, an MQTT integration
#     source (publish on sys/{productKey}/integration/.../post, replies on ..._reply), a Kafka
#     source reading `iot-in` (data-flow messages, IoT topic in the `iot-topic` header), the
#     Kafka sink and the admin server (/metrics, /healthz, /integration/errors).
# Everything runs on free loopback ports in a temporary folder; Ctrl-C (or SIGTERM) stops it
# all and removes the folder.
#
# Usage: deploy/local-stack.sh [--smoke] [--keep] [--dir DIR]
#   --smoke    start the stack, publish seed 003's measure points with mosquitto_pub and a
#              property post through Kafka, check the 200 reply and the output records, stop;
#              exit 0 when all arrived, 1 otherwise
#   --keep     keep the temporary folder (configuration, logs, broker data) on exit
#   --dir DIR  work in DIR (created if missing, never removed) instead of a temporary folder
# Environment:
#   SLUICE_BIN          the sluice binary (default: `cargo build --release` of this repository,
#                       i.e. what `cargo run --release -- run --config …` runs)
#   SLUICE_KAFKA_TOOL   the kafka_tool example binary (default: next to SLUICE_BIN in
#                       examples/, else built with cargo)
#   SLUICE_TANSU        the tansu binary (default ~/.cache/sluice/tools/bin/tansu; installed
#                       by scripts/test-deps.sh when missing: 15-20 minutes the first time)
#   SLUICE_MOSQUITTO    the mosquitto binary (default: PATH, /usr/sbin)
#   SLUICE_STACK_MQTT_PORT, SLUICE_STACK_KAFKA_PORT, SLUICE_STACK_ADMIN_PORT
#                       fixed ports (default: free ones)
#   SLUICE_STACK_TIMEOUT  seconds to wait for each step (default 60)
#   RUST_LOG            Sluice's log filter (default info; the log is <dir>/sluice.log)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_PID=$$
TIMEOUT="${SLUICE_STACK_TIMEOUT:-60}"
SMOKE=0
KEEP=0
DIR=""
OWN_DIR=0

say() { printf '%s\n' "$*"; }
err() { printf 'local-stack: %s\n' "$*" >&2; }
die() {
    err "$*"
    exit 1
}
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --keep) KEEP=1 ;;
    --dir)
        [ $# -ge 2 ] || die "--dir needs a folder"
        DIR="$2"
        shift
        ;;
    --dir=*) DIR="${1#--dir=}" ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

# ---------------------------------------------------------------------------------------------
# Processes: everything started is recorded, and stopped on exit (trap), even on errors.
SERVICE_PIDS=() # sluice, tansu, mosquitto: stopped in reverse start order
SERVICE_NAMES=()
HELPER_PIDS=() # short-lived helpers (mosquitto_sub, kafka_tool) still running
GUARD_PID=""

# Waits for a background helper; the wait is interrupted at once by a signal (a foreground
# command would delay the trap until it ends). Returns the helper's status.
wait_helper() {
    local pid=$1 rc=0
    wait "$pid" || rc=$?
    local keep=()
    for p in ${HELPER_PIDS[@]+"${HELPER_PIDS[@]}"}; do [ "$p" = "$pid" ] || keep+=("$p"); done
    HELPER_PIDS=(${keep[@]+"${keep[@]}"})
    return "$rc"
}

# Runs a command in the background and waits for it (interruptible).
run() {
    "$@" </dev/null &
    local pid=$!
    HELPER_PIDS+=("$pid")
    record_pid "$pid" "$1"
    wait_helper "$pid"
}

record_pid() { [ -z "$DIR" ] || printf '%s %s\n' "$1" "$2" >>"$DIR/.pids"; }

# An interruptible sleep.
NAP_PID=""
nap() {
    sleep "$1" &
    NAP_PID=$!
    wait "$NAP_PID" || true
    NAP_PID=""
}

# Whether a process runs (an exited child not yet waited for is a zombie: not running).
alive() {
    local s
    kill -0 "$1" 2>/dev/null || return 1
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    s="${s##*) }"
    [ "${s%% *}" != Z ]
}

# Stops a process: SIGTERM, then SIGKILL after $2 seconds.
stop_pid() {
    local pid=$1 grace=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap '' INT TERM HUP
    trap - EXIT
    if [ -n "$GUARD_PID" ]; then
        kill -KILL "$GUARD_PID" 2>/dev/null || true
        wait "$GUARD_PID" 2>/dev/null || true
    fi
    if [ -n "$NAP_PID" ]; then
        kill -KILL "$NAP_PID" 2>/dev/null || true
        wait "$NAP_PID" 2>/dev/null || true
    fi
    for p in ${HELPER_PIDS[@]+"${HELPER_PIDS[@]}"}; do stop_pid "$p" 2; done
    local i
    for ((i = ${#SERVICE_PIDS[@]} - 1; i >= 0; i--)); do
        # Sluice first (graceful: it drains and commits), then the brokers.
        if alive "${SERVICE_PIDS[$i]}"; then
            [ "$SMOKE" = 1 ] || say "local-stack: stopping ${SERVICE_NAMES[$i]}"
            stop_pid "${SERVICE_PIDS[$i]}" 8
        fi
    done
    if [ -n "$DIR" ] && [ -d "$DIR" ]; then
        if [ "$OWN_DIR" = 1 ] && [ "$KEEP" = 0 ]; then
            rm -rf "$DIR"
        else
            rm -f "$DIR/.pids" "$DIR/.guard"
            say "local-stack: kept $DIR"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# A watchdog for the case the script is killed without running its trap (SIGKILL): once the
# script is gone it stops what the script started and removes the temporary folder.
start_guard() {
    mkfifo "$DIR/.guard"
    (
        trap '' INT TERM HUP
        exec 3<>"$DIR/.guard" # read -t on it sleeps without a child process
        while alive "$SCRIPT_PID"; do read -r -t 1 -u 3 _ || true; done
        if [ -f "$DIR/.pids" ]; then
            while read -r pid _; do kill -TERM "$pid" 2>/dev/null || true; done <"$DIR/.pids"
            read -r -t 3 -u 3 _ || true
            while read -r pid _; do kill -KILL "$pid" 2>/dev/null || true; done <"$DIR/.pids"
        fi
        if [ "$OWN_DIR" = 1 ] && [ "$KEEP" = 0 ]; then rm -rf "$DIR"; fi
    ) </dev/null >/dev/null 2>&1 &
    GUARD_PID=$!
}

# Starts a long-running service in the background, its output in a log file.
start_service() {
    local name=$1 log=$2
    shift 2
    "$@" </dev/null >"$log" 2>&1 &
    local pid=$!
    SERVICE_PIDS+=("$pid")
    SERVICE_NAMES+=("$name")
    record_pid "$pid" "$name"
}

tail_log() {
    err "last lines of $1:"
    tail -n "${2:-30}" "$1" >&2 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Tools.
find_tansu() {
    if [ -n "${SLUICE_TANSU:-}" ]; then
        [ -x "$SLUICE_TANSU" ] || die "SLUICE_TANSU=$SLUICE_TANSU is not an executable"
        TANSU="$SLUICE_TANSU"
    elif [ -x "$HOME/.cache/sluice/tools/bin/tansu" ]; then
        TANSU="$HOME/.cache/sluice/tools/bin/tansu"
    elif command -v tansu >/dev/null 2>&1; then
        TANSU="$(command -v tansu)"
    else
        return 1
    fi
}
find_mosquitto() {
    if [ -n "${SLUICE_MOSQUITTO:-}" ]; then
        MOSQUITTO="$SLUICE_MOSQUITTO"
    elif command -v mosquitto >/dev/null 2>&1; then
        MOSQUITTO="$(command -v mosquitto)"
    elif [ -x /usr/sbin/mosquitto ]; then
        MOSQUITTO=/usr/sbin/mosquitto
    else
        return 1
    fi
    command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1
}
if ! find_tansu || ! find_mosquitto; then
    say "local-stack: installing the brokers with scripts/test-deps.sh (building tansu takes 15-20 minutes the first time)"
    bash "$REPO/scripts/test-deps.sh"
    find_tansu || die "tansu not found after scripts/test-deps.sh (set SLUICE_TANSU)"
    find_mosquitto || die "mosquitto, mosquitto_pub and mosquitto_sub not found after scripts/test-deps.sh (set SLUICE_MOSQUITTO)"
fi

TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
if [ -n "${SLUICE_BIN:-}" ]; then
    [ -x "$SLUICE_BIN" ] || die "SLUICE_BIN=$SLUICE_BIN is not an executable"
    SLUICE="$SLUICE_BIN"
    # A debug sluice comes with a debug kafka_tool (same dependencies, already built).
    case "$(basename "$(dirname "$SLUICE_BIN")")" in
    debug)
        PROFILE=(--profile dev)
        PROFILE_DIR=debug
        ;;
    *)
        PROFILE=(--release)
        PROFILE_DIR=release
        ;;
    esac
    KAFKA_TOOL="${SLUICE_KAFKA_TOOL:-$(dirname "$SLUICE_BIN")/examples/kafka_tool}"
    if [ -z "${SLUICE_KAFKA_TOOL:-}" ] && [ ! -x "$KAFKA_TOOL" ]; then
        say "local-stack: building the kafka_tool example"
        (cd "$REPO" && cargo build "${PROFILE[@]}" --example kafka_tool)
        [ -x "$KAFKA_TOOL" ] || KAFKA_TOOL="$TARGET/$PROFILE_DIR/examples/kafka_tool"
    fi
else
    say "local-stack: building sluice (release; what \`cargo run --release\` runs) and the kafka_tool example"
    (cd "$REPO" && cargo build --release --bin sluice --example kafka_tool)
    SLUICE="$TARGET/release/sluice"
    KAFKA_TOOL="${SLUICE_KAFKA_TOOL:-$TARGET/release/examples/kafka_tool}"
fi
[ -x "$KAFKA_TOOL" ] || die "kafka_tool not found at $KAFKA_TOOL (build it: cargo build --release --example kafka_tool, or set SLUICE_KAFKA_TOOL)"

# ---------------------------------------------------------------------------------------------
# Work folder and ports.
if [ -n "$DIR" ]; then
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd)"
else
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/sluice-stack-XXXXXX")"
    OWN_DIR=1
fi
rm -f "$DIR/.pids" "$DIR/.guard"
mkdir -p "$DIR/mosquitto" "$DIR/tansu" "$DIR/samples"
# A copy of the sample rules: hot reload and the rules API edit it, never the repository's.
if [ ! -d "$DIR/rules" ]; then
    cp -R "$REPO/rules" "$DIR/rules"
fi
TOKEN="${SLUICE_ADMIN_TOKEN:-local-stack}"
start_guard

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
USED_PORTS=" "
# pick_port VAR ENV_NAME: $ENV_NAME when set (it must be free), else a free port.
pick_port() {
    local var=$1 env=$2 p i
    p="${!env:-}"
    if [ -n "$p" ] && [ "$p" != 0 ]; then
        port_in_use "$p" && die "port $p ($env) is in use"
    else
        for ((i = 0; i < 500; i++)); do
            p=$((20000 + RANDOM % 40000))
            [[ "$USED_PORTS" == *" $p "* ]] || port_in_use "$p" || break
        done
    fi
    USED_PORTS+="$p "
    printf -v "$var" '%s' "$p"
}
pick_port MQTT_PORT SLUICE_STACK_MQTT_PORT
pick_port KAFKA_PORT SLUICE_STACK_KAFKA_PORT
pick_port ADMIN_PORT SLUICE_STACK_ADMIN_PORT
BROKERS="127.0.0.1:$KAFKA_PORT"
ADMIN="http://127.0.0.1:$ADMIN_PORT"

# ---------------------------------------------------------------------------------------------
# Mosquitto.
cat >"$DIR/mosquitto/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
EOF
start_service mosquitto "$DIR/mosquitto/mosquitto.log" "$MOSQUITTO" -c "$DIR/mosquitto/mosquitto.conf"
MOSQUITTO_PID="${SERVICE_PIDS[-1]}"
for ((i = 0; ; i++)); do
    port_in_use "$MQTT_PORT" && break
    alive "$MOSQUITTO_PID" || {
        tail_log "$DIR/mosquitto/mosquitto.log"
        die "mosquitto exited"
    }
    [ "$i" -lt $((TIMEOUT * 10)) ] || die "mosquitto not listening on $MQTT_PORT after ${TIMEOUT}s"
    nap 0.1
done

# ---------------------------------------------------------------------------------------------
# tansu (the command line of crates/testkit/src/lib.rs), then the topics.
tansu_broker() {
    cd "$DIR/tansu" &&
        exec env -u STORAGE_ENGINE -u LISTENER_URL -u ADVERTISED_LISTENER_URL RUST_LOG="${SLUICE_TANSU_LOG:-warn}" \
            "$TANSU" broker --listener-url "tcp://$BROKERS" --advertised-listener-url "tcp://$BROKERS" --storage-engine sqlite://tansu.db
}
start_service tansu "$DIR/tansu/tansu.log" tansu_broker
TANSU_PID="${SERVICE_PIDS[-1]}"

# The topics the sample rules write to: every action and error_action topic of rules/; a
# template such as iot-property-${productKey} once for every product of models/ (the products
# of the seed samples). Plus the default error topic and the Kafka source's input topic.
TOPICS=(sluice-errors iot-in)
PRODUCTS=()
for f in "$REPO"/models/*.toml; do
    [ "$(basename "$f")" = devices.toml ] && continue
    pk="$(sed -n 's/^product_key *= *"\([^"]*\)".*/\1/p' "$f" | head -n 1)"
    PRODUCTS+=("${pk:-$(basename "$f" .toml)}")
done
while IFS= read -r t; do
    if [[ "$t" == *"\${"* ]]; then
        # shellcheck disable=SC2001 # every ${…}, each up to its own }
        for pk in "${PRODUCTS[@]}"; do TOPICS+=("$(sed 's/\${[^}]*}/'"$pk"'/g' <<<"$t")"); done
    else
        TOPICS+=("$t")
    fi
done < <(sed -n 's/^topic *= *"\([^"]*\)".*/\1/p' "$REPO"/rules/*.toml | sort -u)
if ! run "$KAFKA_TOOL" create-topics --brokers "$BROKERS" --timeout-ms "$((TIMEOUT * 1000))" "${TOPICS[@]}" 2>"$DIR/create-topics.log"; then
    cat "$DIR/create-topics.log" >&2
    alive "$TANSU_PID" || err "tansu exited"
    tail_log "$DIR/tansu/tansu.log"
    die "could not create the Kafka topics on $BROKERS"
fi
# tansu 0.6's sqlite schema has no index on record headers: every fetch would scan them all.
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 -cmd ".timeout 10000" "$DIR/tansu/tansu.db" "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);" ||
        err "could not index tansu's record headers (fetches get slower as topics grow)"
fi

# ---------------------------------------------------------------------------------------------
# Sluice.
toml_str() {
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}
cat >"$DIR/sluice.toml" <<EOF
# Generated by deploy/local-stack.sh: the sample rules and registry of $REPO, the MQTT
# integration channel on Mosquitto, data-flow messages from Kafka topic iot-in, output to Kafka.
# Every key is documented in deploy/sluice.toml and deploy/kafka.toml.

[rules]
paths = [$(toml_str "$DIR/rules")]

[engine]
default_error_topic = "sluice-errors"
workers = 1
shutdown_timeout_ms = 5000

[registry]
models = $(toml_str "$REPO/models")

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
token = $(toml_str "$TOKEN")

# The integration channel: sys/{productKey}/integration/{measurepoint|attributes|event}/post
# and sys/{productKey}/integration/up_raw, answered on <topic>_reply.
[[sources]]
type = "mqtt"
url = "mqtt://127.0.0.1:$MQTT_PORT"
client_id = "sluice-local-stack"
decoders_dir = $(toml_str "$REPO/decoders")
reconnect_backoff_ms = 200
reconnect_backoff_max_ms = 2000

# Data-flow messages (seed 004 topics, custom topics): records of iot-in, the IoT topic in
# the iot-topic header.
[[sources]]
type = "kafka"
brokers = "$BROKERS"
topics = ["iot-in"]
group_id = "sluice-local-stack"
iot_topic = { from = "header", name = "iot-topic" }
commit_interval_ms = 500
properties = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }

[sink]
type = "kafka"
brokers = "$BROKERS"
linger_ms = 5
unknown_topic_timeout_ms = 5000
EOF

start_service sluice "$DIR/sluice.log" env RUST_LOG="${RUST_LOG:-info}" "$SLUICE" run --config "$DIR/sluice.toml"
SLUICE_PID="${SERVICE_PIDS[-1]}"

# Ready once it answers an (empty) integration request: its subscriptions are in place.
# A persistent MQTT session (-c) holds the reply topic's subscription between the polls.
READY_REPLY="sys/local-stack/integration/event/post_reply"
READY_REQ='{"id":"local-stack-ready","version":"1.0","params":[],"method":"integration.event.post"}'
MQ=(-h 127.0.0.1 -p "$MQTT_PORT")
run mosquitto_sub "${MQ[@]}" -c -i local-stack-ready -q 1 -E -t "$READY_REPLY"
for ((i = 0; ; i++)); do
    if ! alive "$SLUICE_PID"; then
        wait "$SLUICE_PID" 2>/dev/null || true
        tail_log "$DIR/sluice.log"
        die "sluice exited (configuration $DIR/sluice.toml)"
    fi
    [ "$i" -lt "$TIMEOUT" ] || {
        tail_log "$DIR/sluice.log"
        die "sluice did not answer on MQTT within ${TIMEOUT}s"
    }
    mosquitto_pub "${MQ[@]}" -q 1 -t "sys/local-stack/integration/event/post" -m "$READY_REQ"
    if run mosquitto_sub "${MQ[@]}" -c -i local-stack-ready -q 1 -t "$READY_REPLY" -C 1 -W 1 >/dev/null 2>&1; then
        break
    fi
done

# ---------------------------------------------------------------------------------------------
# Seed samples for mosquitto_pub -f (the integration lines of examples/quickstart.jsonl).
cat >"$DIR/samples/measurepoint.json" <<'EOF'
{"id":"123","version":"1.0","params":[{"deviceKey":"device1","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456},{"deviceKey":"device1","measurepoints":{"Power":{"value":2,"quality":9},"temp":2.02,"branchCurr":["2.02","3.02","9.93"]},"time":123567},{"deviceKey":"device2","measurepoints":{"Power":{"value":1,"quality":9},"temp":1.02,"branchCurr":["1.02","2.02","7.93"]},"time":123456}],"method":"integration.measurepoint.post"}
EOF
cat >"$DIR/samples/event.json" <<'EOF'
{"id":"123","version":"1.0","params":[{"deviceKey":"device1","events":{"eventId1":{"alarm":9,"level":3}},"time":123456},{"deviceKey":"device2","events":{"eventId2":{"result":"ok"}},"time":123456}],"method":"integration.event.post"}
EOF
cat >"$DIR/samples/attributes.json" <<'EOF'
{"id":"123","version":"1.0","params":[{"deviceKey":"device1","attributes":{"attr1":{"key1":"val1","key2":"val2"}}},{"deviceKey":"device2","attributes":{"attr2":2.3}}],"method":"integration.attribute.post"}
EOF
printf '%s' 'AQMEAAoBAv9+' | base64 -d >"$DIR/samples/up_raw.bin"
# A data-flow message for the Kafka source (kafka_tool send format: examples/quickstart.jsonl's).
cat >"$DIR/samples/property_post.jsonl" <<'EOF'
{"topic":"/sys/1234556554/deviceName1234/thing/event/property/post","payload":{"iotId":"4z819VQHk6VSLmmBJfrf00107ee200","productKey":"1234556554","deviceName":"deviceName1234","gmtCreate":1510799670074,"deviceType":"Ammeter","items":{"Power":{"value":"on","time":1510799670074},"Position":{"time":1510292697470,"value":{"latitude":39.9,"longitude":116.38}}}}}
EOF
cat >"$DIR/env.sh" <<EOF
# source $DIR/env.sh
export SLUICE_STACK_DIR=$(printf '%q' "$DIR")
export MQTT_HOST=127.0.0.1 MQTT_PORT=$MQTT_PORT
export KAFKA_BROKERS=$BROKERS
export SLUICE_ADMIN=$ADMIN
export SLUICE_URL=$ADMIN SLUICE_ADMIN_TOKEN=$(printf '%q' "$TOKEN")
export KAFKA_TOOL=$(printf '%q' "$KAFKA_TOOL")
EOF

# ---------------------------------------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
    fail() {
        err "smoke FAILED: $*"
        tail_log "$DIR/sluice.log" 20
        exit 1
    }
    say "local-stack: stack up (MQTT 127.0.0.1:$MQTT_PORT, Kafka $BROKERS, admin $ADMIN); smoke test"
    # The seed samples with a request id / gmtCreate of this run, so that a reused --dir (whose
    # topics hold earlier records) cannot pass on old records.
    MARK="smoke-$(date +%s)-$$"
    MS="$(date +%s%3N)"
    sed 's/"id":"123"/"id":"'"$MARK"'"/' "$DIR/samples/measurepoint.json" >"$DIR/smoke-request.json"
    sed 's/"gmtCreate":1510799670074/"gmtCreate":'"$MS"'/' "$DIR/samples/property_post.jsonl" >"$DIR/smoke-property.jsonl"
    TOPIC="sys/productKey1/integration/measurepoint/post"
    run mosquitto_sub "${MQ[@]}" -c -i local-stack-smoke -q 1 -E -t "${TOPIC}_reply" ||
        fail "cannot subscribe to ${TOPIC}_reply"
    say "\$ mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -q 1 -t $TOPIC -f smoke-request.json   # seed 003, id $MARK"
    mosquitto_pub "${MQ[@]}" -q 1 -t "$TOPIC" -f "$DIR/smoke-request.json" || fail "mosquitto_pub failed"
    run mosquitto_sub "${MQ[@]}" -c -i local-stack-smoke -q 1 -t "${TOPIC}_reply" -C 1 -W "$TIMEOUT" -v >"$DIR/smoke-reply.txt" ||
        fail "no reply on ${TOPIC}_reply within ${TIMEOUT}s"
    REPLY="$(cat "$DIR/smoke-reply.txt")"
    say "reply: $REPLY"
    [[ "$REPLY" == *"{\"id\":\"$MARK\",\"code\":200,"* ]] || fail "the reply is not code 200: $REPLY"

    say "\$ kafka_tool tail --brokers $BROKERS --count 3 --match '\"requestId\":\"$MARK\"' iot-integration-measurepoint"
    run "$KAFKA_TOOL" tail --brokers "$BROKERS" --count 3 --match "\"requestId\":\"$MARK\"" --timeout-ms "$((TIMEOUT * 1000))" iot-integration-measurepoint >"$DIR/smoke-out.jsonl" ||
        fail "the 3 records of the request did not arrive on Kafka topic iot-integration-measurepoint (got: $(cat "$DIR/smoke-out.jsonl"))"
    OUT="$(cat "$DIR/smoke-out.jsonl")"
    say "$OUT"
    [[ "$OUT" == *'"deviceKey":"device1"'* && "$OUT" == *'"deviceKey":"device2"'* ]] || fail "unexpected output records: $OUT"

    say "\$ kafka_tool send --brokers $BROKERS --topic iot-in smoke-property.jsonl   # seed 004, gmtCreate $MS"
    run "$KAFKA_TOOL" send --brokers "$BROKERS" --topic iot-in "$DIR/smoke-property.jsonl" || fail "cannot produce to iot-in"
    say "\$ kafka_tool tail --brokers $BROKERS --count 1 --match '\"gmtCreate\":$MS' iot-property-1234556554"
    run "$KAFKA_TOOL" tail --brokers "$BROKERS" --count 1 --match "\"gmtCreate\":$MS" --timeout-ms "$((TIMEOUT * 1000))" iot-property-1234556554 >"$DIR/smoke-out.jsonl" ||
        fail "the property post read from iot-in did not arrive on iot-property-1234556554 (got: $(cat "$DIR/smoke-out.jsonl"))"
    OUT="$(cat "$DIR/smoke-out.jsonl")"
    say "$OUT"
    [[ "$OUT" == *'"deviceName":"deviceName1234"'* ]] || fail "unexpected output record: $OUT"
    say "\$ sluice rules list"
    run env SLUICE_URL="$ADMIN" SLUICE_ADMIN_TOKEN="$TOKEN" "$SLUICE" rules list >"$DIR/smoke-rules.txt" || fail "sluice rules list failed: $(cat "$DIR/smoke-rules.txt")"
    grep -q '^integration-measurepoint  *running' "$DIR/smoke-rules.txt" || fail "unexpected rule list: $(cat "$DIR/smoke-rules.txt")"
    say "$(cat "$DIR/smoke-rules.txt")"
    say "local-stack: smoke OK"
    exit 0
fi

KT="$KAFKA_TOOL"
cat <<EOF

Sluice local stack is up (work folder $DIR)
  MQTT (integration channel)  127.0.0.1:$MQTT_PORT
  Kafka (tansu)               $BROKERS
  admin                       $ADMIN/metrics  $ADMIN/healthz  $ADMIN/integration/errors
  config / logs               $DIR/sluice.toml  $DIR/sluice.log  $DIR/tansu/tansu.log
  variables                   source $DIR/env.sh

Watch the integration replies:
  mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -v -t 'sys/+/integration/+/post_reply' -t 'sys/+/integration/up_raw_reply'

Publish the seed samples (code 200 replies; product productKey1, devices of models/devices.toml):
  mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -q 1 -t sys/productKey1/integration/measurepoint/post -f $DIR/samples/measurepoint.json
  mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -q 1 -t sys/productKey1/integration/attributes/post -f $DIR/samples/attributes.json
  mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -q 1 -t sys/productKey1/integration/up_raw -f $DIR/samples/up_raw.bin
  mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -q 1 -t sys/productKey1/integration/event/post \\
    -m '$(cat "$DIR/samples/event.json")'
  (an unknown device, e.g. "deviceKey":"nobody", is answered 1257)

Data-flow messages go through Kafka topic iot-in (IoT topic in the iot-topic header), e.g. every
sample of the quickstart:
  $KT send --brokers $BROKERS --topic iot-in $REPO/examples/quickstart.jsonl

Read the output topics (one JSON line per record: topic, key, headers, value; Ctrl-C to stop):
  $KT tail --brokers $BROKERS                                   # every topic
  $KT tail --brokers $BROKERS iot-integration-measurepoint '^iot-property-.*'
  (from the repository: cargo run --release --example kafka_tool -- tail --brokers $BROKERS)
EOF
if command -v kcat >/dev/null 2>&1; then
    say "  kcat -b $BROKERS -C -e -J -t iot-integration-measurepoint"
fi
cat <<EOF

Metrics and readiness:
  curl -s $ADMIN/metrics | grep '^sluice_integration'
  curl -s $ADMIN/readyz

Rules (a copy in $DIR/rules, watched: edit a file and it reloads; a broken edit is refused):
  source $DIR/env.sh; sluice rules list     # or: cargo run --release -- rules list
  sluice rules disable property-post; sluice rules errors integration-event

Ctrl-C stops everything$([ "$OWN_DIR" = 1 ] && [ "$KEEP" = 0 ] && echo " and removes $DIR (--keep keeps it)").
EOF

# Runs until a signal, or until a service dies.
while :; do
    for i in "${!SERVICE_PIDS[@]}"; do
        if ! alive "${SERVICE_PIDS[$i]}"; then
            name="${SERVICE_NAMES[$i]}"
            case "$name" in
            sluice) tail_log "$DIR/sluice.log" ;;
            tansu) tail_log "$DIR/tansu/tansu.log" ;;
            mosquitto) tail_log "$DIR/mosquitto/mosquitto.log" ;;
            esac
            die "$name exited unexpectedly"
        fi
    done
    nap 1
done
