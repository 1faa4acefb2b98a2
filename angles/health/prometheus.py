"""The health snapshot in Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import re

from angles.health.base import SEVERITY

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "angles_"


def _name(raw: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", raw)
    return name if re.match(r"[a-zA-Z_]", name) else f"_{name}"


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value) -> str | None:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return None


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.seen: set[str] = set()

    def gauge(self, name: str, help_text: str, samples) -> None:
        """One gauge family; samples are (labels dict, value) pairs, non-numbers skipped."""
        name = PREFIX + _name(name)
        rendered = []
        for labels, value in samples:
            number = _number(value)
            if number is None:
                continue
            label_text = ",".join(f'{_name(k)}="{_label(v)}"' for k, v in labels.items())
            rendered.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
        if not rendered or name in self.seen:
            return
        self.seen.add(name)
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *rendered]


def render(doc: dict | None, age_seconds: float | None, stale: bool, jobs: dict) -> str:
    """Gauges for the snapshot's validity and age, overall and per-check status, every metric, each job."""
    from angles.health.health_file import iso_to_epoch

    out = _Writer()
    out.gauge("health_snapshot_valid", "1 when a readable health snapshot exists.", [({}, doc is not None)])
    if doc is not None:
        out.gauge("health_snapshot_age_seconds", "Seconds since the snapshot was taken.", [({}, age_seconds)])
        out.gauge("health_snapshot_stale", "1 when the snapshot is older than 3 check intervals.", [({}, stale)])
        out.gauge("health_status", "Overall status: 0 ok, 1 warning, 2 critical.", [({}, SEVERITY[doc["status"]])])
        checks = doc.get("checks") or {}
        out.gauge(
            "health_check_status",
            "Status per check: 0 ok, 1 warning, 2 critical.",
            [({"check": name}, SEVERITY.get(c.get("status"), 2)) for name, c in checks.items() if isinstance(c, dict)],
        )
        metrics = doc.get("metrics") or {}
        for key in sorted(metrics):
            out.gauge(key, f"Health metric {key} from backend_monitor.py.", [({}, metrics[key])])
    for field, help_text in (
        ("last_success", "Unix time of the job's last successful run."),
        ("last_run", "Unix time of the job's last run."),
        ("next_run", "Unix time of the job's next scheduled run."),
    ):
        out.gauge(
            f"scheduler_job_{field}_timestamp_seconds",
            help_text,
            [({"job": name}, iso_to_epoch(job.get(field))) for name, job in jobs.items()],
        )
    out.gauge(
        "scheduler_job_running",
        "1 while the job is running.",
        [({"job": n}, j.get("running")) for n, j in jobs.items()],
    )
    out.gauge(
        "scheduler_job_last_duration_seconds",
        "Duration of the job's last run.",
        [({"job": n}, j.get("last_duration_s")) for n, j in jobs.items()],
    )
    return "\n".join(out.lines) + "\n"
