#!/usr/bin/env bash
# A local Sluice stack to try it by hand: Mosquitto, tansu (Kafka) and Sluice with the sample
# rules, on free loopback ports in a temporary folder; Ctrl-C (or SIGTERM) stops it all and
# removes the folder. The stack is the example examples/local_stack (on the test kit); this
# builds it, the sluice binary and the kafka_tool example, then runs it.
#
# Usage: deploy/local-stack.sh [--smoke] [--keep] [--dir DIR]
#   --smoke    start the stack, publish seed 003's measure points over MQTT and a property post
#              through Kafka, check the 200 reply and the output records, stop; exit 0 when all
#              arrived, 1 otherwise
#   --keep     keep the temporary folder (configuration, logs, broker data) on exit
#   --dir DIR  work in DIR (created if missing, never removed) instead of a temporary folder
# Environment: see `deploy/local-stack.sh --help`. SLUICE_BIN, the sluice binary, defaults to
# `cargo build --release` of this repository (what `cargo run --release -- run --config …`
# runs); a sluice of target/debug (a test build) comes with debug builds of the examples.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
TARGETS=(--example local_stack --example kafka_tool)
PROFILE=(--release) PROFILE_DIR=release
if [ -n "${SLUICE_BIN:-}" ]; then
    # A sluice of <target>/debug or <target>/release: the examples go next to it.
    case "$(basename "$(dirname "$SLUICE_BIN")")" in
    debug) PROFILE=(--profile dev) PROFILE_DIR=debug TARGET="$(dirname "$(dirname "$SLUICE_BIN")")" ;;
    release) TARGET="$(dirname "$(dirname "$SLUICE_BIN")")" ;;
    esac
fi
export CARGO_TARGET_DIR="$TARGET"
if [ -z "${SLUICE_BIN:-}" ]; then
    TARGETS+=(--bin sluice)
    export SLUICE_BIN="$TARGET/release/sluice"
fi
echo "local-stack: building ${TARGETS[*]} (${PROFILE[*]})"
(cd "$REPO" && cargo build "${PROFILE[@]}" "${TARGETS[@]}")
export SLUICE_KAFKA_TOOL="${SLUICE_KAFKA_TOOL:-$TARGET/$PROFILE_DIR/examples/kafka_tool}"
exec "$TARGET/$PROFILE_DIR/examples/local_stack" "$@"
