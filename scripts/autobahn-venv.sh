#!/usr/bin/env bash
# Sets up Autobahn|Testsuite (`wstest`) for crates/server/tests/it_autobahn.rs, in a Python
# 2.7 virtualenv at target/autobahn-venv (the suite runs only on Python 2.7). Idempotent: a
# venv that already has `wstest` costs nothing. The interpreter is $CORECAST_PYTHON27, else
# pyenv's 2.7.18, else a `python2.7` on PATH; without one it prints why and exits 0 (the
# test then fails under CI=true and is skipped elsewhere, saying so).
#
# The pins are a set that installs and runs on Python 2.7 today; newer versions of most of
# them no longer support it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CORECAST_AUTOBAHN_VENV:-$PWD/target/autobahn-venv}
if [ -x "$venv/bin/wstest" ]; then
  echo "autobahn: $venv/bin/wstest present"
  exit 0
fi

py=${CORECAST_PYTHON27:-}
if [ -z "$py" ] && command -v pyenv >/dev/null 2>&1; then
  cand="$(pyenv root)/versions/2.7.18/bin/python"
  [ -x "$cand" ] && py=$cand
fi
if [ -z "$py" ] && [ -x "${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.18/bin/python" ]; then
  py="${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.18/bin/python"
fi
if [ -z "$py" ] && command -v python2.7 >/dev/null 2>&1; then py=$(command -v python2.7); fi
if [ -z "$py" ]; then
  echo "autobahn: no Python 2.7 interpreter (pyenv 2.7.18 or python2.7); it_autobahn cannot run" >&2
  exit 0
fi
echo "autobahn: building $venv with $py"

# A half-built venv from an interrupted run is rebuilt; anything else at that path is left.
if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ ! -x "$venv/bin/python" ]; then
  echo "autobahn: $venv exists and is not a virtualenv; not touching it" >&2
  exit 1
fi
tools="$venv.tools"
rm -rf "$venv" "$tools"
"$py" -m pip install --quiet --disable-pip-version-check --target "$tools" 'virtualenv<20.22'
PYTHONPATH="$tools" "$py" -m virtualenv --quiet "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2 Twisted==19.10.0 \
  zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0 \
  service_identity==18.1.0 unittest2==1.1.0 six==1.16.0 'autobahn[accelerate,twisted]==0.10.9' \
  autobahntestsuite==25.10.1
rm -rf "$tools"
"$venv/bin/wstest" --help >/dev/null 2>&1 || "$venv/bin/python" -c 'import autobahntestsuite'
echo "autobahn: $venv/bin/wstest ready"
