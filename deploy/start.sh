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
# The scheduler's first health check runs at once: it must find the dashboard answering, not still starting.
"$python" - "$dashboard" <<'EOF' || echo "dashboard not answering (see logs/active/health_server.log); starting the scheduler anyway"
import os, sys, time
from angles.config import load_settings
from angles.health.base import OK, Context
from angles.health.dashboard import DashboardCheck

settings, deadline = load_settings(), time.monotonic() + 30
while DashboardCheck().run(settings, Context(settings)).status != OK:
    try:
        os.kill(int(sys.argv[1]), 0)
    except ProcessLookupError:
        sys.exit(1)  # the dashboard exited (its port taken?): waiting longer changes nothing
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.2)
EOF

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
