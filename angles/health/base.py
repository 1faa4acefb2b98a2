"""What every health check shares: the result shape, the check interface and the run context."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

logger = logging.getLogger(__name__)

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
SEVERITY = {OK: 0, WARNING: 1, CRITICAL: 2}
# A deployment checklist (verify_deployment.py) asks "is this deployment ready?", a stricter question than the
# monitor's "how urgent is it?": a stopped scheduler is a monitor warning but a checklist failure.
PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
VERDICTS = {OK: PASS, WARNING: WARN, CRITICAL: FAIL}


@dataclass
class CheckResult:
    """One check's verdict: a status, a short display value, a one-line reason and numeric metrics."""

    name: str
    status: str
    value: str
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    label: str = ""
    # What a person does about it, shown on its own line by the checklist.
    hint: str = ""
    # The checklist's PASS, WARN or FAIL where it differs from the status's (see VERDICTS).
    verdict: str = ""

    @property
    def checklist_verdict(self) -> str:
        return self.verdict or VERDICTS.get(self.status, FAIL)


class Check:
    """A check; subclasses set name and label and implement run().

    The monitor, the deployment checklist and `memory_sync.py --test` all show the results of these objects.
    A check used only by a checklist may return None from run() where it does not apply.
    """

    name = ""
    label = ""
    # Checks that wait on the network (or sleep to sample) run in worker threads; the others run in order.
    waits = False
    # What a check that overruns the monitor's deadline reports.
    timeout_status = WARNING

    def run(self, settings, context: Context) -> CheckResult:
        raise NotImplementedError

    def result(
        self, status: str, value: str, reason: str, metrics=None, details=None, *, hint: str = "", verdict: str = ""
    ) -> CheckResult:
        return CheckResult(
            self.name, status, value, reason, dict(metrics or {}), dict(details or {}), self.label, hint, verdict
        )


def run_check(check: Check, settings, context: Context) -> CheckResult | None:
    """Run one check; a check that breaks reports itself as a warning (and a checklist failure), never raises."""
    try:
        result = check.run(settings, context)
        if result is not None and not result.label:
            result.label = check.label or check.name
        return result
    except Exception as exc:
        logger.warning("health check %s failed", check.name, exc_info=True)
        return check.result(
            WARNING,
            "error",
            f"{check.label} check failed: {type(exc).__name__}: {one_line(exc, 150)}",
            hint="see the logs in logs/active/",
            verdict=FAIL,
        )


def rising(value: float, warning: float, critical: float) -> str:
    """Status for a value where higher is worse."""
    if value >= critical:
        return CRITICAL
    if value >= warning:
        return WARNING
    return OK


def worst(statuses) -> str:
    return max(statuses, key=lambda s: SEVERITY.get(s, 2), default=OK)


def age_hours(stamp: str | None, now: datetime) -> float | None:
    """Hours since an ISO timestamp, None when absent or unreadable."""
    if not stamp or not isinstance(stamp, str):
        return None
    from angles.engines.decision_model import parse_timestamp

    try:
        return (now - parse_timestamp(stamp)).total_seconds() / 3600
    except (ValueError, TypeError):
        return None


def one_line(text, limit: int = 300) -> str:
    """First line of a message, shortened, so reasons stay greppable and the snapshot stays small."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Context:
    """Per-run shared state: the time, one storage connection opened on first use, answers two checks share.

    thorough=True (the checklist, `memory_sync.py --test`): the services get a real request each (the Notion
    schema, a tiny analysis) and more time; the monitor's light probes spend no tokens and stay within seconds.
    """

    def __init__(self, settings, now: datetime | None = None, *, thorough: bool = False):
        self.settings = settings
        self.now = now or datetime.now(UTC)
        self.thorough = thorough
        self._lock = threading.Lock()
        self._storage = None
        self._storage_error: Exception | None = None
        self._opened = False
        self._shared: dict[str, tuple[object, Exception | None]] = {}
        self._shared_lock = threading.Lock()

    def shared(self, key: str, compute):
        """compute() once per run and key; its answer (or the error it raised) is given to every check asking."""
        with self._shared_lock:
            if key not in self._shared:
                try:
                    self._shared[key] = (compute(), None)
                except Exception as exc:
                    self._shared[key] = (None, exc)
            value, error = self._shared[key]
        if error is not None:
            raise error
        return value

    def storage(self):
        """The database, or raise the error met when opening it (the same one for every check)."""
        with self._lock:
            if not self._opened:
                self._opened = True
                try:
                    from angles.storage import open_storage

                    self._storage = open_storage(self.settings, create=False)
                    self._storage.ping()
                except Exception as exc:
                    self._storage_error = exc
                    if self._storage is not None:
                        self._close_quietly()
            if self._storage_error is not None:
                raise self._storage_error
            return self._storage

    def database_missing(self) -> bool:
        """True on the embedded default before run_migration.py has created the SQLite file."""
        return self.settings.database_kind == "sqlite" and not self.settings.sqlite_path.exists()

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        if self._storage is not None:
            try:
                self._storage.close()
            except Exception:
                logger.debug("closing the health check's storage failed", exc_info=True)
            self._storage = None
