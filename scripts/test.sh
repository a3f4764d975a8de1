#!/usr/bin/env bash
# Runs every test of Sluice. README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
cargo test --locked --all-targets
