#!/usr/bin/env bash
# Start the dashboard in the background and the scheduler in the foreground; Ctrl-C (or SIGTERM) stops both.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}

dashboard=""
stop_dashboard() {
  if [ -n "$dashboard" ] && kill -0 "$dashboard" 2>/dev/null; then
    kill -TERM "$dashboard" 2>/dev/null
    wait "$dashboard" 2>/dev/null
  fi
}
trap stop_dashboard EXIT
# Forwarded explicitly: the scheduler is a child, so a SIGTERM sent to this script alone would not reach it.
trap 'kill -TERM "$scheduler" 2>/dev/null' TERM
# Ctrl-C reaches the scheduler straight from the terminal; the script only waits for it to finish cleanly.
trap ':' INT

"$python" tools/health_server.py &
dashboard=$!
echo "dashboard started (pid $dashboard) on http://${HEALTH_HOST:-127.0.0.1}:${HEALTH_PORT:-5000}/"

echo "scheduler starting in the foreground; logs in logs/active/scheduler.log; Ctrl-C stops both"
"$python" scheduler.py &
scheduler=$!
status=0
# wait returns early when a trapped signal arrives; keep waiting until the scheduler has really exited.
while kill -0 "$scheduler" 2>/dev/null; do
  wait "$scheduler"
  status=$?
done
exit "$status"
