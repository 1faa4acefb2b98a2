"""The health snapshot as Prometheus metrics: a prometheus_client collector over the snapshot and the job table."""

from __future__ import annotations

import math
import re

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from angles.health.base import SEVERITY

# The text format scrapers have read from this endpoint since it exists.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PREFIX = "angles_"
JOB_TIMES = (
    ("last_success", "Unix time of the job's last successful run."),
    ("last_run", "Unix time of the job's last run."),
    ("next_run", "Unix time of the job's next scheduled run."),
)


def _name(raw: str) -> str:
    """A snapshot metric key as a valid metric name."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", raw)
    return name if re.match(r"[a-zA-Z_]", name) else f"_{name}"


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isinf(value)):
        return float(value)
    return None


class SnapshotCollector:
    """Gauges for the snapshot's validity and age, overall and per-check status, every metric, each job."""

    def __init__(self, doc: dict | None, age_seconds: float | None, stale: bool, jobs: dict):
        self.doc = doc
        self.age_seconds = age_seconds
        self.stale = stale
        self.jobs = jobs

    def collect(self):
        seen: set[str] = set()

        def gauge(name: str, help_text: str, samples, label: str | None = None):
            """One family; samples are (label value or None, value) pairs, non-numbers skipped."""
            name = PREFIX + _name(name)
            numbers = [(key, _number(value)) for key, value in samples]
            numbers = [(key, value) for key, value in numbers if value is not None]
            if not numbers or name in seen:
                return None
            seen.add(name)
            family = GaugeMetricFamily(name, help_text, labels=[label] if label else None)
            for key, value in numbers:
                family.add_metric([str(key)] if label else [], value)
            return family

        from angles.health.health_file import iso_to_epoch

        doc = self.doc
        families = [
            gauge("health_snapshot_valid", "1 when a readable health snapshot exists.", [(None, doc is not None)])
        ]
        if doc is not None:
            checks = doc.get("checks") or {}
            metrics = doc.get("metrics") or {}
            families += [
                gauge(
                    "health_snapshot_age_seconds", "Seconds since the snapshot was taken.", [(None, self.age_seconds)]
                ),
                gauge(
                    "health_snapshot_stale",
                    "1 when the snapshot is older than 3 check intervals.",
                    [(None, self.stale)],
                ),
                gauge(
                    "health_status", "Overall status: 0 ok, 1 warning, 2 critical.", [(None, SEVERITY[doc["status"]])]
                ),
                gauge(
                    "health_check_status",
                    "Status per check: 0 ok, 1 warning, 2 critical.",
                    [(name, SEVERITY.get(c.get("status"), 2)) for name, c in checks.items() if isinstance(c, dict)],
                    "check",
                ),
            ]
            families += [
                gauge(key, f"Health metric {key} from backend_monitor.py.", [(None, metrics[key])])
                for key in sorted(metrics)
            ]
        for field, help_text in JOB_TIMES:
            samples = [(name, iso_to_epoch(job.get(field))) for name, job in self.jobs.items()]
            families.append(gauge(f"scheduler_job_{field}_timestamp_seconds", help_text, samples, "job"))
        families += [
            gauge(
                "scheduler_job_running",
                "1 while the job is running.",
                [(n, j.get("running")) for n, j in self.jobs.items()],
                "job",
            ),
            gauge(
                "scheduler_job_last_duration_seconds",
                "Duration of the job's last run.",
                [(n, j.get("last_duration_s")) for n, j in self.jobs.items()],
                "job",
            ),
        ]
        yield from (family for family in families if family is not None)


def render(doc: dict | None, age_seconds: float | None, stale: bool, jobs: dict) -> bytes:
    """The exposition text of one scrape."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(doc, age_seconds, stale, jobs))
    return generate_latest(registry)
