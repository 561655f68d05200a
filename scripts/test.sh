#!/usr/bin/env bash
# The test command (README.md): installs what the tests need and is missing on a Debian
# machine (apt, pip, npm; once, so a second run costs seconds), checks formatting and lints,
# then runs the whole workspace's tests. Extra arguments go to `cargo test` (for example
# `scripts/test.sh -p corecast-proto`). `.ci/run` calls this and nothing else, so every CI
# run on a fresh machine proves the set-up.
#
# Installing needs root (CI is root); as another user, apt runs through sudo if there is one.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
apt-get() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
export DEBIAN_FRONTEND=noninteractive
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
# curl, for the Expect: 100-continue test of POST /pub (crates/server/tests/it_http_front.rs).
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The web client tests (crates/server/tests/it_web_clients.rs): Debian's headless Chromium,
# and Node.js with npm (the machine's own when it has one, else Debian's).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The operations tests (crates/server/tests/it_ops_scripts.rs): shellcheck for scripts/*.sh,
# and systemd-analyze (Debian's systemd package) to verify deploy/corecast.service.
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# promtool (Debian's prometheus package) checks and unit-tests deploy/prometheus-alerts.yml.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian package may start a redis-server on 6379; the tests use their own ephemeral
# ports, so it is harmless, but stop it to keep the machine quiet.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop redis-server nats-server prometheus >/dev/null 2>&1 || true; fi

# pip_install PACKAGE: plain pip, then past PEP 668 (a Debian system Python refuses pip
# installs unless told otherwise), then with Debian's pip installed first.
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$1" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$1" \
    || { apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null \
         && python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$1"; }
}
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
  pip_install prometheus-client \
    || { apt-get update -qq && apt-get install -y -qq python3-prometheus-client >/dev/null; }
fi
# redis-py 5 or later (RESP3 support; 8 and later open connections with HELLO 3).
if ! python3 -c 'import redis, sys; sys.exit(int(redis.__version__.split(".")[0]) < 5)' 2>/dev/null; then
  pip_install 'redis>=5'
fi
python3 -c 'import redis; print("redis-py", redis.__version__)'
# Third-party web clients for it_web_clients.rs: Python websockets (13 or later, for its
# asyncio client module) and sseclient-py (module `sseclient`; the unrelated PyPI package
# `sseclient` has the same module name without SSEClient.events, hence the check).
if ! python3 -c 'import websockets.asyncio.client' 2>/dev/null; then
  pip_install 'websockets>=13'
fi
if ! python3 -c 'import sseclient; sseclient.SSEClient.events' 2>/dev/null; then
  pip_install sseclient-py
fi
python3 -c 'import websockets; print("websockets", websockets.__version__)'
# npm packages ws and eventsource, into the test folder (versions pinned in its
# package.json; no lock file is kept). `npm ls` fails when one is missing or of another
# version, so an up-to-date folder costs no install.
web_node=crates/server/tests/web/node
if ! npm ls --prefix "$web_node" ws eventsource >/dev/null 2>&1; then
  (cd "$web_node" && npm install --no-audit --no-fund --no-package-lock --loglevel=error)
fi
# Autobahn|Testsuite for crates/server/tests/it_autobahn.rs: it runs only on Python 2.7
# (Debian 12 has none; pyenv's 2.7.18 here), in a virtualenv at target/autobahn-venv with
# pinned packages. Skipped once the venv has `wstest`. A failed set-up does not stop the run
# here: the test tries again and says why (a failure under CI=true, a loud skip elsewhere).
scripts/autobahn-venv.sh || echo "autobahn: set-up failed; it_autobahn will report why" >&2
echo "node $(node --version), npm $(npm --version)"
chromium --version 2>/dev/null
shellcheck --version | sed -n 's/^version: /shellcheck /p'
systemd-analyze --version | sed -n 1p

curl --version | sed -n 1p
redis-server --version
nats-server --version
cargo --version

# Formatting and lints are part of the build: unformatted code or a clippy warning fails CI.
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "+ cargo fmt --all -- --check"
cargo fmt --all -- --check
echo "+ cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings 2>&1

echo "+ cargo test --workspace $*"
cargo test --workspace "$@" 2>&1
