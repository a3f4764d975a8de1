# Shared by the bench/ scripts (sourced, from the repository root): a work folder removed on
# exit with every process the script started (append their PIDs to PIDS), a free port, and the
# release build of what a script runs.

# bench_workdir NAME: sets WORK (a new folder under /tmp) and PIDS; on exit, kills every PID in
# PIDS and removes WORK (KEEP=1 keeps it and says where).
bench_workdir() {
    WORK="$(mktemp -d "/tmp/sluice-$1-XXXXXX")"
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}

# bench_build [--example NAME]…: builds sluice (and the examples) in PROFILE (default release;
# PROFILE=dev is quicker to build, for checking a script); sets OUT, the folder of the binaries,
# and SLUICE.
bench_build() {
    PROFILE="${PROFILE:-release}"
    cargo build --profile "$PROFILE" --locked --bin sluice "$@"
    OUT="$PWD/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
    SLUICE="$OUT/sluice"
}

# A free TCP port on 127.0.0.1: picked at random until nothing answers on it.
free_port() {
    local p=$(( 20000 + RANDOM % 20000 ))
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$(( 20000 + RANDOM % 20000 )); done
    echo "$p"
}

# bench_band_rules DIR: the Kafka benchmarks' 10 rules, one per band of 10 degrees of
# items.temp.value (each record passes exactly one WHERE), to topic bench-out keyed by the
# device name, with a `band` header.
bench_band_rules() {
    mkdir -p "$1"
    for i in $(seq 0 9); do
        cat >"$1/band$i.toml" <<RULE
name = "temp-band-$i"
sql = """SELECT deviceName() AS dn, items.temp.value AS temp, items.Power.value AS power, items.Position.value.latitude AS lat, gmtCreate AS ts FROM "/sys/+/+/thing/event/property/post" WHERE items.temp.value >= $((i * 10)) AND items.temp.value < $((i * 10 + 10))"""
[[actions]]
topic = "bench-out"
key = "\${dn}"
[actions.headers]
band = "$i"
RULE
    done
}

# bench_rules DIR: the rules of RULES: `band` (default, bench_band_rules), `single` (one
# stateless rule passing every record to bench-out), or `window` (that rule plus a per-device
# 60 s tumbling average over event time, gmtCreate, to bench-windows: the cost of one windowed
# rule is the difference between `window` and `single`).
bench_rules() {
    case "${RULES:-band}" in
    band) bench_band_rules "$1" ;;
    single | window)
        mkdir -p "$1"
        cat >"$1/pass.toml" <<'RULE'
name = "pass"
sql = """SELECT deviceName() AS dn, items.temp.value AS temp FROM "/sys/+/+/thing/event/property/post" """
[[actions]]
topic = "bench-out"
key = "${dn}"
RULE
        if [ "${RULES}" = window ]; then
            cat >"$1/window.toml" <<'RULE'
name = "avg-temp"
sql = """SELECT deviceName() AS dn, avg(items.temp.value) AS avg_temp, count(*) AS n, window_start() AS ws FROM "/sys/+/+/thing/event/property/post" GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60)"""
event_time = "gmtCreate"
max_future_skew_ms = 9000000000000
[[actions]]
topic = "bench-windows"
key = "${dn}"
RULE
        fi
        ;;
    *) echo "RULES must be band, single or window" >&2; exit 2 ;;
    esac
}

# bench_sluice_config FILE BROKERS: Sluice's configuration for the Kafka benchmarks: the band
# rules of $WORK/rules, WORKERS workers, a Kafka source on bench-in and the Kafka sink, each
# table with the lines of SOURCE_EXTRA / SINK_EXTRA added.
bench_sluice_config() {
    cat >"$1" <<CONF
[rules]
paths = ["$WORK/rules"]

[engine]
workers = $WORKERS

[[sources]]
type = "kafka"
brokers = "$2"
topics = ["bench-in"]
group_id = "bench-sluice"
${SOURCE_EXTRA:-}

[sink]
type = "kafka"
brokers = "$2"
${SINK_EXTRA:-}
CONF
    # STATE=1: the stateful rules' state in a store under WORK (checkpoints hold the acks).
    if [ "${STATE:-}" = 1 ]; then printf '\n[state]\ndir = "%s"\n' "$WORK/state" >>"$1"; fi
}
