"""When to notify: one notification per change of a condition's level, a reminder while critical, a recovery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from angles.engines.decision_model import parse_timestamp, to_iso

OK, WARNING, CRITICAL = "ok", "warning", "critical"
SEVERITY = {OK: 0, WARNING: 1, CRITICAL: 2}

ALERT, RECOVERY, REMINDER = "alert", "recovery", "reminder"


@dataclass(frozen=True)
class Decision:
    """What to send (None: nothing) and the condition's record to keep until the next observation."""

    kind: str | None
    level: str
    previous_level: str
    record: dict


def rising(value: float, warning: float, critical: float) -> str:
    """The level of a value where higher is worse."""
    if value >= critical:
        return CRITICAL
    return WARNING if value >= warning else OK


def notified_level(level: str, threshold: str) -> str:
    """The level as notifications see it: below ALERT_LEVEL counts as ok."""
    return level if SEVERITY.get(level, 2) >= SEVERITY[threshold] else OK


def decide(record: dict | None, level: str, now: datetime, *, threshold: str, repeat_hours: float) -> Decision:
    """Compare an observation with the condition's record.

    The record holds the level last notified and when; a first observation at ok needs no notification. A
    change of notified level is an alert (or a recovery when it is back to ok); an unchanged critical level
    is reminded every repeat_hours (0: never).
    """
    record = dict(record or {})
    before = record.get("level", OK)
    after = notified_level(level, threshold)
    if after != before:
        kind = RECOVERY if after == OK else ALERT
        changed = {"level": after, "since": to_iso(now), "notified_at": to_iso(now)}
        return Decision(kind, after, before, changed)
    if after == CRITICAL and repeat_hours > 0 and _due(record.get("notified_at"), now, repeat_hours):
        return Decision(REMINDER, after, before, {**record, "notified_at": to_iso(now)})
    return Decision(None, after, before, record)


def reminder_due(record: dict, now: datetime, repeat_hours: float) -> bool:
    """True when a condition still critical was last notified repeat_hours ago or more."""
    return record.get("level") == CRITICAL and repeat_hours > 0 and _due(record.get("notified_at"), now, repeat_hours)


def _due(notified_at, now: datetime, repeat_hours: float) -> bool:
    try:
        last = parse_timestamp(notified_at)
    except (TypeError, ValueError):
        return True
    return now - last >= timedelta(hours=repeat_hours)
