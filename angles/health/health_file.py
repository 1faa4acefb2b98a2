"""The health snapshot file, its greppable log and the 24-hour history the dashboard charts."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from angles.files import atomic_write
from angles.health.base import SEVERITY, worst

SNAPSHOT_FILE = "system_health.json"
LOG_FILE = "system_health.log"
HISTORY_FILE = "health_history.jsonl"
SNAPSHOT_VERSION = 1
MAX_SNAPSHOT_BYTES = 256_000
MAX_DETAILS_BYTES = 64_000
HISTORY_WINDOW = timedelta(hours=24)
# A day of one point a minute; extra runs by hand only push the oldest points out sooner.
MAX_HISTORY_POINTS = 1440
HISTORY_FIELDS = {"cpu": "cpu_percent", "memory": "memory_percent", "disk": "disk_percent", "load": "load_5"}


def snapshot_path(settings) -> Path:
    return Path(settings.active_logs_dir) / SNAPSHOT_FILE


def log_path(settings) -> Path:
    return Path(settings.active_logs_dir) / LOG_FILE


def history_path(settings) -> Path:
    return Path(settings.data_dir) / HISTORY_FILE


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def build(results, settings, *, now: datetime, duration_s: float, host: str) -> dict:
    """A flat, bounded document: overall status, time, each check's status/value/reason, metrics, details."""
    checks, metrics, details = {}, {}, {}
    counts = {"ok": 0, "warning": 0, "critical": 0}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
        checks[result.name] = {
            "label": result.label,
            "status": result.status,
            "value": str(result.value)[:80],
            "reason": str(result.reason)[:300],
        }
        for key, value in result.metrics.items():
            number = _number(value)
            if number is not None:
                metrics[str(key)[:60]] = number
        if result.details:
            details[result.name] = result.details
    if len(json.dumps(details, default=str)) > MAX_DETAILS_BYTES:
        details = {"dropped": "details exceeded the snapshot's size bound"}
    status = worst(r.status for r in results)
    return {
        "version": SNAPSHOT_VERSION,
        "status": status,
        "time": iso(now),
        "host": host[:80],
        "duration_s": round(duration_s, 3),
        "interval_minutes": settings.health_interval_minutes,
        "counts": counts,
        "checks": checks,
        "metrics": metrics,
        "details": details,
    }


def load(path: Path) -> tuple[dict | None, str | None]:
    """The snapshot, or None with a reason an operator understands when it is missing or unusable."""
    try:
        size = path.stat().st_size
        if size > MAX_SNAPSHOT_BYTES:
            return None, f"health snapshot {path.name} is {size} bytes, over the {MAX_SNAPSHOT_BYTES}-byte bound"
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "no health snapshot yet: run python backend_monitor.py (the scheduler runs it every few minutes)"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"health snapshot {path.name} is unreadable ({type(exc).__name__})"
    try:
        doc = json.loads(text)
    except ValueError:
        return None, f"health snapshot {path.name} is corrupt (not JSON): run python backend_monitor.py"
    if (
        not isinstance(doc, dict)
        or doc.get("status") not in SEVERITY
        or not isinstance(doc.get("time"), str)
        or not isinstance(doc.get("checks"), dict)
    ):
        return None, f"health snapshot {path.name} is corrupt (missing status, time or checks)"
    if iso_to_epoch(doc["time"]) is None:
        return None, f"health snapshot {path.name} is corrupt (unreadable time {doc['time'][:40]!r})"
    return doc, None


def age_seconds(doc: dict, now: datetime | None = None) -> float | None:
    from angles.engines.decision_model import parse_timestamp

    try:
        stamp = parse_timestamp(doc["time"])
    except (KeyError, TypeError, ValueError):
        return None
    return ((now or datetime.now(UTC)) - stamp).total_seconds()


def log_lines(doc: dict) -> list[str]:
    """One greppable line per check (`CPU: 12.3% ok`), then the overall verdict."""
    lines = []
    for name, check in doc["checks"].items():
        label = check.get("label") or name
        line = f"{doc['time']} {label}: {check['value']} {check['status']}"
        if check["status"] != "ok":
            line += f" - {check['reason']}"
        lines.append(line)
    counts = doc["counts"]
    lines.append(
        f"{doc['time']} Overall: {doc['status']} ({counts.get('warning', 0)} warning, "
        f"{counts.get('critical', 0)} critical, {doc['duration_s']:.2f} s)"
    )
    return lines


def append_log(settings, lines: list[str]) -> None:
    path = log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def history_point(doc: dict) -> dict:
    point = {"time": doc["time"], "status": doc["status"]}
    for short, metric in HISTORY_FIELDS.items():
        value = doc["metrics"].get(metric)
        if value is not None:
            point[short] = value
    return point


def read_history(settings, now: datetime | None = None) -> list[dict]:
    """Points of the last 24 h, oldest first; unreadable lines are skipped."""
    from angles.engines.decision_model import parse_timestamp

    path = history_path(settings)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            raw = handle.read(MAX_HISTORY_POINTS * 400)
    except OSError:
        return []
    cutoff = (now or datetime.now(UTC)) - HISTORY_WINDOW
    points = []
    for line in raw.splitlines():
        try:
            point = json.loads(line)
            if isinstance(point, dict) and parse_timestamp(point["time"]) >= cutoff:
                points.append(point)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return points[-MAX_HISTORY_POINTS:]


def append_history(settings, doc: dict, now: datetime) -> None:
    """Add this run's point and drop what is older than 24 h, under a lock so concurrent runs lose nothing."""
    from angles.locks import locked

    path = history_path(settings)
    with locked(path.with_suffix(".lock"), wait=None):
        points = read_history(settings, now)
        points.append(history_point(doc))
        text = "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in points[-MAX_HISTORY_POINTS:])
        atomic_write(path, text)


def iso_to_epoch(stamp) -> float | None:
    """Unix time of an ISO timestamp, None for anything else."""
    from angles.engines.decision_model import parse_timestamp

    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return parse_timestamp(stamp).timestamp()
    except (ValueError, TypeError):
        return None
