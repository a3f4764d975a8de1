#!/usr/bin/env bash
# Installs what the tests need, when it is missing:
# - tansu, the Kafka-compatible broker the Kafka tests start (from crates.io, into
#   $HOME/.cache/sluice/tools; the first build takes 15-20 minutes);
# - Mosquitto (Debian's packages), the MQTT broker;
# - sqlite3 (Debian's packages), with which the test harness indexes tansu's database;
# - moto (PyPI), an S3-compatible server for the HTTP upload's S3 store test;
# - Chromium (Debian's package, /usr/bin/chromium), Node.js and npm, and playwright-core (npm,
#   the exact version of tests/browser/package-lock.json, into tests/browser/node_modules) for
#   the web console's browser test (tests/it/console.rs runs tests/browser/console.mjs). No
#   browser is downloaded: playwright-core drives Debian's Chromium.
set -euo pipefail

TOOLS="$HOME/.cache/sluice/tools"
if [ -n "${SLUICE_TANSU:-}" ] && [ -x "${SLUICE_TANSU}" ]; then
    echo "test-deps: tansu from SLUICE_TANSU=${SLUICE_TANSU}"
elif [ -x "$TOOLS/bin/tansu" ]; then
    echo "test-deps: tansu already in $TOOLS/bin"
else
    echo "test-deps: installing tansu 0.6.0 into $TOOLS (takes a while the first time)"
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$TOOLS"
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_install() {
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "$@"
}
if ! command -v mosquitto >/dev/null 2>&1; then
    echo "test-deps: installing mosquitto"
    apt_install mosquitto mosquitto-clients
fi
if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "test-deps: installing sqlite3"
    apt_install sqlite3
fi
if ! command -v moto_server >/dev/null 2>&1; then
    echo "test-deps: installing moto (an S3-compatible server for the object-store test)"
    python3 -m pip install --quiet "moto[server]"
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "test-deps: installing chromium (the browser test's headless browser)"
    apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "test-deps: installing Node.js and npm"
    apt_install nodejs npm
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "test-deps: warning: node $(node --version) is older than playwright-core's minimum (20); the browser test needs Node.js 20 or later" >&2
fi
BROWSER_TESTS="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
if [ ! -d "$BROWSER_TESTS/node_modules/playwright-core" ]; then
    echo "test-deps: installing playwright-core into $BROWSER_TESTS/node_modules"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$BROWSER_TESTS" --no-audit --no-fund
fi
