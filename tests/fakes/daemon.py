"""Start scheduler.py as an operator would, with a small job table, and read what it recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FAKE = "tests.fakes.scheduler_jobs"


def write_jobs(home: Path, jobs: list[dict], *, defaults: bool = False, **timings) -> Path:
    """A SCHEDULER_JOBS_FILE with short intervals; `call` may be given as a bare name from scheduler_jobs."""
    table = []
    for job in jobs:
        job = dict(job)
        if ":" not in job.get("call", ":"):
            job["call"] = f"{FAKE}:{job['call']}"
        table.append(job)
    path = home / "jobs.json"
    path.write_text(json.dumps({"defaults": defaults, "tick_seconds": 0.05, "jobs": table, **timings}))
    return path


def script_env(home: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env["ANGLES_HOME"] = str(home)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start(home: Path, *args: str, name: str = "daemon", **extra: str) -> subprocess.Popen:
    """scheduler.py in its own session, output in files under home (the daemon must not block on a full pipe)."""
    out = open(home / f"{name}.out", "w")  # noqa: SIM115 - closed with the process by the test's teardown
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), *args],
        cwd=home,
        env=script_env(home, **extra),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_script(home: Path, port: int, **popen) -> subprocess.Popen:
    """deploy/start.sh (dashboard and scheduler) in its own session, the dashboard on `port`."""
    return subprocess.Popen(
        ["bash", str(ROOT / "deploy" / "start.sh")],
        env=script_env(home, PYTHON=sys.executable, HEALTH_PORT=str(port)),
        start_new_session=True,
        **popen,
    )


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def wait_for(predicate, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def state(home: Path) -> dict:
    try:
        return json.loads((home / "data" / "scheduler_state.json").read_text())
    except (OSError, ValueError):
        return {}


def activity(settings, job: str | None = None) -> list[dict]:
    from angles.storage import open_storage

    with open_storage(settings, create=False) as storage:
        return list(storage.iter_activity(agent_name=job))


def log_text(home: Path, component: str = "scheduler") -> str:
    path = home / "logs" / "active" / f"{component}.log"
    return path.read_text() if path.exists() else ""
