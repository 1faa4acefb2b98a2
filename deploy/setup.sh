#!/usr/bin/env bash
# Set up a fresh Debian machine: virtual environment, requirements, schema.
# --dev also installs what the tests and benchmarks need (test requirements, Chromium, git, wrk, nginx-light)
# and starts PostgreSQL if it is down.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd="sudo"
apt_install() {
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "$@" >/dev/null
}

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
# Debian ships venv's pip bootstrap in a separate package.
if [ ! -x .venv/bin/python ] && ! "$python" -c "import ensurepip" 2>/dev/null && command -v apt-get >/dev/null; then
  apt_install python3-venv
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
if [ "$dev" = 1 ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  missing=()
  for pkg in chromium chromium-driver git wrk nginx-light; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
  # bench/run.py starts its own nginx on a free port; the packaged site on port 80 it just installed is not wanted.
  if [[ " ${missing[*]} " == *" nginx-light "* ]] && [ -d /run/systemd/system ]; then
    $sudo_cmd systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
  if command -v pg_ctlcluster >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  fi
else
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  .venv/bin/python run_migration.py
fi
