"""Run history: what each job last did, read from agent_activity and from the state file the daemon keeps fresh."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from angles.engines.decision_model import parse_timestamp, to_iso
from angles.files import atomic_write
from angles.jobs.specs import JobSpec
from angles.runs import describe_error

logger = logging.getLogger(__name__)

RUN_ACTIONS = ("scheduled_run", "manual_run")
STATE_FILE = "scheduler_state.json"
MAX_STATE_BYTES = 1_000_000


def state_path(settings) -> Path:
    return Path(settings.data_dir) / STATE_FILE


def load_state(settings) -> tuple[dict | None, str | None]:
    """The daemon's state file, or None with the reason it cannot be used (None, None when absent)."""
    path = state_path(settings)
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            return None, f"{path.name} is larger than {MAX_STATE_BYTES} bytes"
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"{path.name} is unreadable or not JSON ({type(exc).__name__})"
    if not isinstance(state, dict):
        return None, f"{path.name} is not a JSON object"
    return state, None


def read_state(settings) -> dict:
    """The state file, {} when there is none or it is unusable."""
    return load_state(settings)[0] or {}


def write_state(settings, state: dict) -> None:
    atomic_write(state_path(settings), json.dumps(state, indent=2, default=str) + "\n")


def empty_status(spec: JobSpec) -> dict:
    return {
        "schedule": spec.describe(),
        "last_run": None,
        "last_result": None,
        "last_duration_s": None,
        "last_success": None,
        "running": False,
    }


def last_runs(settings, jobs) -> dict[str, dict]:
    """Per job: last run, result, duration and last success, read from agent_activity."""
    from angles.storage import open_storage

    found: dict[str, dict] = {}
    try:
        with open_storage(settings) as storage:
            for spec in jobs:
                since = to_iso(datetime.now(UTC) - timedelta(seconds=spec.period_seconds) - timedelta(days=1))
                rows = _runs(storage, spec.name, since)
                if spec.kind != "interval" and not any(r["status"] == "completed" for r in rows):
                    # Daily and weekly jobs must tell "long ago" from "never"; interval jobs run either way.
                    rows = _runs(storage, spec.name, None)
                info: dict = {}
                for row in rows:
                    if row["status"] in ("completed", "failed"):
                        info.update(
                            last_run=row.get("started_at") or row["created_at"],
                            last_result=row["status"],
                            last_duration_s=row.get("duration_s"),
                        )
                    if row["status"] == "completed":
                        info["last_success"] = row.get("finished_at") or row["created_at"]
                found[spec.name] = info
    except Exception as exc:
        logger.error("could not read the run history: %s", describe_error(exc))
    return found


def _runs(storage, name: str, since: str | None) -> list[dict]:
    return [r for r in storage.iter_activity(since=since, agent_name=name) if r.get("action") in RUN_ACTIONS]


def merge(statuses: dict[str, dict], history: dict, previous: dict) -> None:
    """Fill each job's status from agent_activity, falling back on the previous state file; the latest success wins."""
    for name, status in statuses.items():
        found = history.get(name, {})
        old = previous.get(name, {})
        status["last_run"] = found.get("last_run") or old.get("last_run")
        status["last_result"] = found.get("last_result") or old.get("last_result")
        status["last_duration_s"] = found.get("last_duration_s", old.get("last_duration_s"))
        successes = [s for s in (found.get("last_success"), old.get("last_success")) if s]
        status["last_success"] = max(successes, key=parse_timestamp) if successes else None
