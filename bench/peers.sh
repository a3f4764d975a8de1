#!/usr/bin/env bash
# Sluice against a peer on the same broker in the same run: N (default 100,000) property posts
# (bench/kafka_copy.rs `produce`, KEYED=1 for device-keyed input) go to a fresh tansu broker,
# then, one after the other, each reading the same input topic in its own consumer group:
#   1. sluice: the 10 band rules of bench/kafka_e2e.sh -> bench-out;
#   2. Quix Streams (Python, PyPI): the same 10 rules (bench/peers/quix_rules.py) -> quix-out;
#   3. the plain consume-and-produce copy (no rules) -> copy-out.
# Each is timed from its process start until its output topic holds N records; its own CPU
# (user + system, all threads, of the process and its children, /proc/PID/stat) and the
# broker's CPU over the same span are taken at that moment. Quix's output is then checked
# against Sluice's, record by record (bench/peers/check.py). Prints one table.
#
# Quix Streams is installed from PyPI, at the versions of bench/peers/requirements.txt, into a
# venv (SLUICE_BENCH_VENV, default ~/.cache/sluice/bench-venv), reused when it has them.
# QUIX_PRODUCER=default gives Quix librdkafka's producer defaults instead of Sluice's sink
# settings (idempotence, lz4, linger 5 ms, ...), which it gets by default.
# QUIX_PARTITIONER=consistent_random: Quix partitions its output as Sluice does (librdkafka's
# default) instead of by its own default, murmur2.
# Usage: [PROFILE=dev] [KEYED=1] [PARTITIONS=8] [WORKERS=2] [QUIX_PRODUCER=default] [QUIX_PARTITIONER=…]
#        [TIMEOUT=3600] bench/peers.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
PARTITIONS="${PARTITIONS:-8}"
WORKERS="${WORKERS:-2}"
TIMEOUT="${TIMEOUT:-3600}"
INPUT="$([ "${KEYED:-}" = 1 ] && echo device-keyed || echo unkeyed)"

bash scripts/test-deps.sh >/dev/null
TANSU="${SLUICE_TANSU:-$HOME/.cache/sluice/tools/bin/tansu}"

# The peer's venv: made once, reused while it holds the pinned versions.
VENV="${SLUICE_BENCH_VENV:-$HOME/.cache/sluice/bench-venv}"
REQS="$PWD/bench/peers/requirements.txt"
PY="$VENV/bin/python"
venv_ok() {
    [ -x "$PY" ] && "$PY" - "$REQS" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, want = line.split("==")
        assert version(name) == want, (name, version(name), want)
PY
}
if ! venv_ok; then
    echo "== installing $(grep -v '^#' "$REQS" | xargs) into $VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    venv_ok || { echo "peers: $VENV does not hold the versions of $REQS" >&2; exit 1; }
fi
QUIX_VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("quixstreams"))')"
# What Python spends importing Quix Streams, part of Quix's CPU below (printed, not subtracted).
QUIX_IMPORT_CPU="$("$PY" -W ignore -c 'import os, quixstreams; t = os.times(); print(f"{t.user + t.system:.2f}")' 2>/dev/null)"

# PROFILE=dev measures a debug build (quicker to build, for checking the script).
. bench/common.sh
bench_build --example kafka_copy
TOOL="$OUT/examples/kafka_copy"

bench_workdir peers

HZ="$(getconf CLK_TCK)"
# CPU seconds (user + system, all threads, and of its waited-for children) a process and its
# live descendants have used so far. The fields after the command name, which may hold spaces.
cpu_s() {
    local pid total=0 kids
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        total=$(awk -v hz="$HZ" -v t="$total" '{ sub(/^.*\) /, ""); printf "%.2f", t + ($12 + $13 + $14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || echo "$total")
        kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null | xargs)
        # shellcheck disable=SC2086 # one pid a word
        [ -z "$kids" ] || total=$(awk -v a="$total" -v b="$(cpu_s $kids)" 'BEGIN { printf "%.2f", a + b }')
    done
    echo "$total"
}
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

# A free port for the broker: pick at random until nothing answers on it.
PORT=$(( 20000 + RANDOM % 20000 ))
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    PORT=$(( 20000 + RANDOM % 20000 ))
done
B="127.0.0.1:$PORT"
(cd "$WORK" && exec env RUST_LOG=warn "$TANSU" broker --listener-url "tcp://$B" --advertised-listener-url "tcp://$B" --storage-engine sqlite://tansu.db >tansu.log 2>&1) &
TPID=$!
PIDS+=("$TPID")
"$TOOL" create "$B" "bench-in:$PARTITIONS" "bench-out:$PARTITIONS" "quix-out:$PARTITIONS" "copy-out:$PARTITIONS" "sluice-errors:1"
# tansu 0.6 has no index on record headers (every fetched record would scan them all).
sqlite3 -cmd ".timeout 10000" "$WORK/tansu.db" "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);"

echo "== producing $N $INPUT records to bench-in ($PARTITIONS partitions)"
"$TOOL" produce "$B" bench-in "$N"

bench_band_rules "$WORK/rules"
bench_sluice_config "$WORK/sluice.toml" "$B"

# measure NAME TOPIC LOG CMD...: starts CMD, waits until TOPIC holds N records (or CMD ends
# first: a failure, unless it is a command that stops by itself and said so), and sets
# T (seconds), CPU (the process's CPU-s then, empty if it had ended) and BROKER (tansu's CPU-s
# over the run). Leaves the process running, its pid in MPID.
measure() {
    local name="$1" topic="$2" log="$3" t0
    shift 3
    echo "== $name -> $topic"
    t0=$(cpu_s "$TPID")
    "$@" >"$log" 2>&1 &
    MPID=$!
    PIDS+=("$MPID")
    "$TOOL" wait "$B" "$topic" "$N" "$TIMEOUT" >"$WORK/wait.out" &
    local wpid=$!
    PIDS+=("$wpid")
    wait -n "$wpid" "$MPID" || true
    if kill -0 "$wpid" 2>/dev/null; then
        # The process ended before its output was complete.
        wait "$MPID" && rc=0 || rc=$?
        if [ "$rc" -ne 0 ]; then
            echo "peers: $name exited with $rc before $topic held $N records; its log:" >&2
            tail -n 30 "$log" >&2
            exit 1
        fi
        CPU=""
        wait "$wpid"
    else
        wait "$wpid" || { echo "peers: $name: $topic not complete in ${TIMEOUT}s; its log:" >&2; tail -n 30 "$log" >&2; exit 1; }
        CPU=$(cpu_s "$MPID")
    fi
    BROKER=$(sub "$(cpu_s "$TPID")" "$t0")
    T=$(cat "$WORK/wait.out")
    echo "   $N records in ${T}s, ${CPU:-?} CPU-s, tansu $BROKER CPU-s"
}

# stop PID: SIGTERM, then waits for it to end.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

measure "sluice (10 rules, $WORKERS workers)" bench-out "$WORK/sluice.log" \
    "$SLUICE" run --config "$WORK/sluice.toml"
S=("$T" "$CPU" "$BROKER")
stop "$MPID"

measure "quix streams $QUIX_VERSION (10 rules)" quix-out "$WORK/quix.log" \
    env QUIX_STATE_DIR="$WORK/quix-state" "$PY" bench/peers/quix_rules.py "$B" bench-in quix-out bench-quix
Q=("$T" "$CPU" "$BROKER")
stop "$MPID"

measure "plain copy (no rules)" copy-out "$WORK/copy.log" \
    "$TOOL" copy "$B" bench-in copy-out bench-copy "$N"
wait "$MPID"
# The copy stops by itself once all are delivered: its CPU is the one it printed then.
C=("$T" "${CPU:-$(sed -n 's/.*, \([0-9.]*\) CPU-s$/\1/p' "$WORK/copy.log")}" "$BROKER")

echo "== checking quix-out against bench-out"
"$PY" bench/peers/check.py "$B" bench-out quix-out "$N"

echo
echo "$N $INPUT records, $PARTITIONS partitions, tansu (sqlite), one after the other on one broker:"
awk -v n="$N" -v w="$WORKERS" -v qv="$QUIX_VERSION" -v qp="${QUIX_PRODUCER:-sluice}${QUIX_PARTITIONER:+, partitioner $QUIX_PARTITIONER}" -v qi="$QUIX_IMPORT_CPU" \
    -v st="${S[0]}" -v sc="${S[1]}" -v sb="${S[2]}" \
    -v qt="${Q[0]}" -v qc="${Q[1]}" -v qb="${Q[2]}" \
    -v ct="${C[0]}" -v cc="${C[1]}" -v cb="${C[2]}" 'BEGIN {
    printf "| processor | time | msg/s | own CPU µs/msg | broker CPU-s |\n| --- | --- | --- | --- | --- |\n";
    printf "| Sluice, 10 rules (%d workers) | %.1f s | %.0f | %.1f | %.1f |\n", w, st, n / st, sc * 1e6 / n, sb;
    printf "| Quix Streams %s, 10 rules (producer: %s) | %.1f s | %.0f | %.1f | %.1f |\n", qv, qp, qt, n / qt, qc * 1e6 / n, qb;
    printf "| plain copy, no rules | %.1f s | %.0f | %.1f | %.1f |\n", ct, n / ct, cc * 1e6 / n, cb;
    printf "(Quix CPU includes %.2f CPU-s of Python importing quixstreams: %.1f µs/msg here)\n", qi, qi * 1e6 / n;
    printf "Quix / Sluice: CPU per message %.2f, msg/s %.2f\n", qc / sc, st / qt;
    printf "Sluice / copy msg/s %.2f; Quix / copy msg/s %.2f\n", ct / st, ct / qt;
}'
