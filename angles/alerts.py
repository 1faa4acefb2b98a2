"""Alerts that reach a person: healthchecks pings around every job run, Apprise notifications on changes.

Hooks, each fail-soft (it logs, never raises, and delays its caller by at most 10 s per target):
  job_started / job_finished   around every job run, scheduled or --run-now
  health_evaluated             after each health snapshot (backend_monitor.py and the scheduler's health job)
  watch_heartbeat              in the dashboard: a scheduler whose heartbeat went stale
What was notified, and how each target's last delivery went, is kept in data/alert_state.json.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from angles.engines import alerting
from angles.engines.alerting import ALERT, CRITICAL, OK, RECOVERY, REMINDER, WARNING
from angles.engines.decision_model import parse_timestamp, to_iso
from angles.logs import LOG_FORMAT, Redactor, UTCFormatter

logger = logging.getLogger(__name__)

STATE_FILE = "alert_state.json"
# A run pings twice (start and end), so each ping gets half the 10 s a target may delay a job.
PING_SECONDS = 5.0
NOTIFY_SECONDS = 10.0
PROBE_SECONDS = 3.0
FAIL_BODY_LINES = 100
FAIL_BODY_BYTES = 10_000
HEARTBEAT_POLL_SECONDS = 60.0
TEST_SLUG = "health_check"
MAX_LISTED = 8

HTTP_PORTS = {
    "http": 80,
    "https": 443,
    "json": 80,
    "jsons": 443,
    "xml": 80,
    "xmls": 443,
    "form": 80,
    "forms": 443,
    "ntfy": 80,
    "ntfys": 443,
    "gotify": 80,
    "gotifys": 443,
}
# Services whose Apprise URL holds tokens where a host would be: the host they actually talk to.
SERVICE_HOSTS = {
    "slack": "hooks.slack.com",
    "discord": "discord.com",
    "tgram": "api.telegram.org",
    "ntfy": "ntfy.sh",
    "ntfys": "ntfy.sh",
}


@dataclass(frozen=True)
class Target:
    """One place alerts go: a healthchecks ping URL (the base, or one job's override) or an Apprise URL."""

    kind: str  # "healthchecks" or "apprise"
    url: str
    job: str | None = None  # the job a HEALTHCHECKS_URL_<JOB> override belongs to

    @property
    def id(self) -> str:
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        """Scheme and host only: the rest of an alert URL is often a key or token."""
        shown = display_url(self.url)
        if self.kind == "healthchecks":
            return f"healthchecks {shown}" + (f" ({self.job})" if self.job else "")
        return shown


def display_url(url: str) -> str:
    """`scheme://host[:port]`, or `scheme://…` when the host part is a token (slack://T…/B…/…)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return url.split("://", 1)[0] + "://…" if "://" in url else "(unparseable URL)"
    if not _looks_like_host(host):
        return f"{parts.scheme}://…"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _looks_like_host(host: str) -> bool:
    return bool(host) and ("." in host or host == "localhost" or ":" in host)


def targets(settings) -> list[Target]:
    """Every configured target: HEALTHCHECKS_URL, each HEALTHCHECKS_URL_<JOB>, each ALERT_URLS entry."""
    found = []
    if settings.healthchecks_url:
        found.append(Target("healthchecks", settings.healthchecks_url))
    found += [Target("healthchecks", url, job) for job, url in settings.healthchecks_job_urls]
    found += [Target("apprise", url) for url in settings.alert_urls]
    return found


def ping_target(settings, job: str) -> tuple[Target, str] | None:
    """The healthchecks target of one job and its ping URL; None when pings are off for it."""
    from angles.services import healthchecks

    # Healthchecks slugs are lower case, and so are the job names HEALTHCHECKS_URL_<JOB> gives.
    slug = job.lower()
    overrides = dict(settings.healthchecks_job_urls)
    if slug in overrides:
        return Target("healthchecks", overrides[slug], slug), overrides[slug]
    if settings.healthchecks_url:
        return Target("healthchecks", settings.healthchecks_url), healthchecks.job_url(settings.healthchecks_url, slug)
    return None


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _redactor(settings) -> Redactor:
    return Redactor(settings.secrets)


class JobRun:
    """One run of a job: its run id for the pings and the last log lines of its thread, redacted."""

    def __init__(self, settings, job: str):
        self.settings = settings
        self.job = job
        self.run_id = str(uuid.uuid4())
        self.thread = threading.get_ident()
        self.reported_health = False
        self.lines: collections.deque[str] = collections.deque(maxlen=FAIL_BODY_LINES)

    def failure_report(self, details: str) -> str:
        """The fail ping's body: the run's last lines, at most 100 lines and 10 KB, ending with the error."""
        lines = [*self.lines, f"{self.job} failed: {details}"][-FAIL_BODY_LINES:]
        redact = _redactor(self.settings)
        lines = [redact(line) for line in lines]
        while len(lines) > 1 and len("\n".join(lines).encode()) > FAIL_BODY_BYTES:
            lines.pop(0)
        text = "\n".join(lines)
        return text.encode()[-FAIL_BODY_BYTES:].decode("utf-8", "ignore")


class _RunLines(logging.Handler):
    """One handler for every run, kept on the root logger: adding and removing one per run would race
    other threads walking the root's handler list, and could cost them a line."""

    def __init__(self):
        super().__init__()
        self.setFormatter(UTCFormatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        run = _runs.get(record.thread)
        if run is None:
            return
        try:
            run.lines.extend(self.format(record).splitlines())
        except Exception:
            self.handleError(record)


_runs: dict[int, JobRun] = {}  # the run going on in each thread
_runs_lock = threading.Lock()
_run_lines = _RunLines()


def job_started(settings, job: str) -> None:
    """Ping `<job>/start` and start keeping the run's log lines; call it in the thread that runs the job."""
    try:
        if not targets(settings):
            return
        root = logging.getLogger()
        if _run_lines not in root.handlers:
            root.addHandler(_run_lines)
        run = JobRun(settings, job)
        with _runs_lock:
            _runs[run.thread] = run
        found = ping_target(settings, job)
        if found:
            target, url = found
            _deliver_pings([(target, url, "start", "")], settings, run.run_id)
    except Exception:
        logger.warning("alerts: the start hook of %s failed", job, exc_info=True)


def job_finished(settings, job: str, status: str, details: str, *, now: datetime | None = None) -> None:
    """Ping success or fail (with the run's last log lines) and notify a failure, a recovery or a reminder."""
    try:
        with _runs_lock:
            run = _runs.pop(threading.get_ident(), None)
        if run is not None and run.job != job:
            run = None
        failed = status != "completed"
        found = ping_target(settings, job)
        if found:
            target, url = found
            if failed:
                body = run.failure_report(details) if run else _redactor(settings)(f"{job} failed: {details}")
            else:
                body = _redactor(settings)(f"{job} completed: {details}")
            _deliver_pings([(target, url, "fail" if failed else "success", body)], settings, run and run.run_id)
        # A health run fails (exit 5) when health is critical; health_evaluated has already told that story.
        level = CRITICAL if failed and not (run and run.reported_health) else OK
        _observe(settings, [_job_condition(job, level, details, _now(now))], _now(now))
    except Exception:
        logger.warning("alerts: the end hook of %s failed", job, exc_info=True)


def _job_condition(job: str, level: str, details: str, now: datetime) -> Observation:
    host = socket.gethostname()
    when = to_iso(now)[:19] + "Z"
    return Observation(
        key=f"job:{job}",
        level=level,
        titles={ALERT: f"{job} failed", RECOVERY: f"{job} recovered", REMINDER: f"{job} still failing"},
        bodies={
            ALERT: lambda w: f"{job} failed on {host} at {when}: {details}",
            RECOVERY: lambda w: f"{job} completed on {host} at {when}; it had been failing since {w['since']}.",
            REMINDER: lambda w: f"{job} has been failing on {host} since {w['since']}; last error: {details}",
        },
        detail=details,
    )


@dataclass
class Observation:
    """One condition as just seen, with the words to notify each kind of change.

    Each body is a function of {"since": when the current level began, "previous": the level notified before}.
    """

    key: str
    level: str
    titles: dict[str, str]
    bodies: dict[str, Callable[[dict], str]]
    detail: str = ""
    extra: dict | None = None  # kept in the condition's record (the health checks' statuses)
    changed: tuple[str, ...] = ()  # for health: the checks whose status changed since the last notification


def health_evaluated(settings, doc: dict, *, now: datetime | None = None) -> None:
    """After a health snapshot: overall status changes (naming the checks that changed) and a stale backup."""
    try:
        now = _now(now)
        run = _runs.get(threading.get_ident())
        if run is not None:
            run.reported_health = True
        if not settings.alert_urls:
            return
        checks = {name: c for name, c in (doc.get("checks") or {}).items() if isinstance(c, dict)}
        observations = [_health_condition(doc, checks, _previous_checks(settings), now)]
        if "backup" in checks:
            observations.append(_backup_condition(doc, checks["backup"], settings))
        _observe(settings, observations, now, remind_all=True)
    except Exception:
        logger.warning("alerts: the health hook failed", exc_info=True)


def _previous_checks(settings) -> dict:
    record = _read_state(settings).get("conditions", {}).get("health", {})
    return record.get("checks") or {}


def _health_condition(doc: dict, checks: dict, before: dict, now: datetime) -> Observation:
    status = doc.get("status", OK)
    host = doc.get("host") or socket.gethostname()
    statuses = {name: c.get("status", OK) for name, c in checks.items()}
    changed_names = tuple(name for name in statuses if statuses[name] != before.get(name, OK))
    changed = [
        f"{checks[name].get('label') or name}: {before.get(name, OK)} -> {statuses[name]}"
        + (f" ({checks[name].get('reason')})" if statuses[name] != OK else "")
        for name in changed_names
    ]
    problems = [
        f"{c.get('label') or name}: {c.get('status')}: {c.get('reason')}"
        for name, c in checks.items()
        if c.get("status") != OK
    ]
    when = to_iso(now)[:19] + "Z"
    head = f"Health on {host} is {status} at {when}"
    changes = ("\nChanged:\n- " + "\n- ".join(changed[:MAX_LISTED])) if changed else ""
    now_failing = ("\nNot ok now:\n- " + "\n- ".join(problems[:MAX_LISTED])) if problems else ""
    return Observation(
        key="health",
        level=status,
        titles={ALERT: f"Health {status}", RECOVERY: "Health ok again", REMINDER: f"Health still {status}"},
        bodies={
            ALERT: lambda w: f"{head} (was {w['previous']}).{changes}{now_failing}",
            RECOVERY: lambda w: f"{head} (was {w['previous']}).{changes}",
            REMINDER: lambda w: f"{head} since {w['since']}.{now_failing}",
        },
        detail="; ".join(problems[:MAX_LISTED]),
        extra={"checks": statuses},
        changed=changed_names,
    )


def _backup_condition(doc: dict, backup: dict, settings) -> Observation:
    """How old the last good backup is; a failed run with a recent good backup is the backup job's alert."""
    age = (doc.get("metrics") or {}).get("backup_age_hours")
    if isinstance(age, int | float):
        level = alerting.rising(age, settings.backup_warning_hours, settings.backup_critical_hours)
        detail = f"the last good backup is {age:.1f} h old (alert after {settings.backup_warning_hours:g} h)"
    else:
        level, detail = backup.get("status", OK), str(backup.get("reason") or "no good backup recorded")
    return Observation(
        key="backup",
        level=level,
        titles={ALERT: "Backup overdue", RECOVERY: "Backup current again", REMINDER: "Backup still overdue"},
        bodies={
            ALERT: lambda w: f"{detail}. Run python run_backup_now.py and see logs/active/backup.log.",
            RECOVERY: lambda w: f"Backups are current again: {detail}.",
            REMINDER: lambda w: f"No good backup since {w['since']}: {detail}.",
        },
        detail=detail,
    )


def heartbeat_evaluated(settings, state: dict | None, *, now: datetime | None = None) -> None:
    """The dashboard's view of the scheduler: critical when its heartbeat went stale, warning when stopped."""
    try:
        if not settings.alert_urls or not state:
            return
        now = _now(now)
        host = state.get("host") or socket.gethostname()
        stale_after = float(settings.scheduler_stale_seconds)
        tick = state.get("tick_seconds")
        if isinstance(tick, int | float) and not isinstance(tick, bool) and tick > 0:
            stale_after = max(stale_after, 3 * float(tick))
        try:
            age = (now - parse_timestamp(state.get("last_tick"))).total_seconds()
        except (TypeError, ValueError, AttributeError):
            age = None
        if state.get("stopped_at"):
            level, detail = WARNING, f"the scheduler on {host} was stopped at {state['stopped_at'][:19]}Z"
        elif age is None or age >= stale_after:
            shown = f"{age:.0f} s" if age is not None else "ever"
            level = CRITICAL
            detail = f"no scheduler heartbeat on {host} for {shown} (limit {stale_after:g} s): it died or hangs"
        else:
            level, detail = OK, f"the scheduler on {host} is beating again"
        observation = Observation(
            key="scheduler",
            level=level,
            titles={
                ALERT: f"Scheduler {'stopped' if level == WARNING else 'down'}",
                RECOVERY: "Scheduler running again",
                REMINDER: "Scheduler still down",
            },
            bodies={
                ALERT: lambda w: f"{detail}. Start it: bash deploy/start.sh or systemctl start angles-scheduler.",
                RECOVERY: lambda w: f"{detail} (down since {w['since']}).",
                REMINDER: lambda w: f"{detail}; down since {w['since']}.",
            },
            detail=detail,
        )
        _observe(settings, [observation], now)
    except Exception:
        logger.warning("alerts: the scheduler heartbeat watch failed", exc_info=True)


def watch_heartbeat(settings, stop: threading.Event | None = None, interval: float = HEARTBEAT_POLL_SECONDS):
    """A daemon thread for the dashboard process: every minute, look at the scheduler's heartbeat."""
    from angles.jobs.history import read_state

    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.is_set():
            state = read_state(settings)
            heartbeat_evaluated(settings, state)
            stop.wait(interval)

    if not settings.alert_urls:
        return None
    thread = threading.Thread(target=loop, name="alert-heartbeat", daemon=True)
    thread.start()
    return thread


def _observe(settings, observations: list[Observation], now: datetime, *, remind_all: bool = False) -> None:
    """Record each observation and notify what changed; with remind_all, also remind every condition still critical."""
    if not settings.alert_urls:
        return
    redact = _redactor(settings)
    messages = []
    with _state(settings) as state:
        conditions = state.setdefault("conditions", {})
        told: set[str] = set()  # checks a health notification of this round has named as changed
        for obs in observations:
            record = conditions.get(obs.key)
            decision = alerting.decide(
                record, obs.level, now, threshold=settings.alert_level, repeat_hours=settings.alert_repeat_hours
            )
            new = {**decision.record, **(obs.extra or {})}
            if decision.kind is None and record is not None:
                # What a notification names as changed is measured from the last notification.
                new.update({k: record[k] for k in (obs.extra or {}) if k in record})
            words = {"since": _moment(new.get("since"), now), "previous": decision.previous_level}
            new.update(
                detail=redact(obs.detail)[:300],
                reminder_title=obs.titles[REMINDER],
                reminder_body=redact(obs.bodies[REMINDER](words)),
            )
            if decision.kind == RECOVERY:
                words["since"] = _moment((record or {}).get("since"), now)
            conditions[obs.key] = new
            if decision.kind is None or (obs.key in told and decision.kind != REMINDER):
                continue
            told.update(obs.changed)
            title = obs.titles[decision.kind]
            if decision.kind == RECOVERY and obs.level != OK:
                # Below ALERT_LEVEL now, yet not ok: say what it is rather than "ok again".
                title = f"{obs.titles[ALERT]} (no longer {decision.previous_level})"
            messages.append((title, obs.bodies[decision.kind](words), decision.level))
        if remind_all:
            seen = {obs.key for obs in observations}
            for key, record in conditions.items():
                if key not in seen and alerting.reminder_due(record, now, settings.alert_repeat_hours):
                    record["notified_at"] = to_iso(now)
                    title = record.get("reminder_title") or f"{key} still critical"
                    messages.append((title, record.get("reminder_body") or title, CRITICAL))
    if messages:
        _notify_all(settings, messages, now)


def _moment(stamp: str | None, now: datetime) -> str:
    """A record's timestamp as people read it: to the second, in UTC."""
    return (stamp or to_iso(now))[:19] + "Z"


def _notify_all(settings, messages: list[tuple[str, str, str]], now: datetime) -> None:
    """Each message to every Apprise target, targets in parallel, the whole at most NOTIFY_SECONDS."""
    from angles.services import notifications

    redact = _redactor(settings)
    clean = [(redact(title), redact(body), level) for title, body, level in messages]
    for title, _, _ in clean:
        logger.info("alert: %s", title)

    def send_all(target: Target) -> None:
        for title, body, level in clean:
            notifications.send(target.url, title, body, level)

    jobs = [(target, send_all) for target in targets(settings) if target.kind == "apprise"]
    _run_bounded(settings, jobs, NOTIFY_SECONDS, now)


def _deliver_pings(pings: list[tuple[Target, str, str, str]], settings, run_id: str | None) -> None:
    from angles.services import healthchecks

    jobs = [
        (target, lambda _, url=url, signal=signal, body=body: healthchecks.send(url, signal, body, run_id=run_id))
        for target, url, signal, body in pings
    ]
    _run_bounded(settings, jobs, PING_SECONDS, datetime.now(UTC))


def _run_bounded(settings, jobs, seconds: float, now: datetime) -> dict[str, str | None]:
    """Run each (target, call) in a thread of its own; a call still going after `seconds` is abandoned.

    Returns each target's error (None: delivered) and records it, so the Alerts check sees the last delivery.
    """
    outcome: dict[str, str | None] = {}
    lock = threading.Lock()

    def work(target: Target, call) -> None:
        from angles.services.healthchecks import PingError
        from angles.services.notifications import NotifyError

        try:
            call(target)
            error = None
        except (PingError, NotifyError) as exc:
            error = str(exc)
        except Exception as exc:
            # The text of an unexpected error may hold the URL; its type is enough to act on.
            error = f"unexpected {type(exc).__name__}"
        with lock:
            outcome[target.id] = error

    threads = []
    for target, call in jobs:
        thread = threading.Thread(target=work, args=(target, call), name="alert-delivery", daemon=True)
        thread.start()
        threads.append((target, thread))
    deadline = time.monotonic() + seconds
    for _, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for target, _ in threads:
            outcome.setdefault(target.id, f"no answer within {seconds:g} s; abandoned")
        results = dict(outcome)
    _record_deliveries(settings, [(target, results[target.id]) for target, _ in threads], now)
    return results


def _record_deliveries(settings, delivered: list[tuple[Target, str | None]], now: datetime) -> None:
    """Keep each target's last delivery; warn once when a target starts failing, say when it delivers again."""
    if not delivered:
        return
    redact = _redactor(settings)
    with _state(settings) as state:
        known = state.setdefault("targets", {})
        for target, error in delivered:
            before = known.get(target.id, {})
            entry = {"kind": target.kind, "name": target.name, "last_attempt": to_iso(now)}
            if error is None:
                entry.update(ok=True, last_ok=to_iso(now), last_error=None, failing_since=None)
                if before.get("ok") is False:
                    logger.info("alert target %s delivers again", target.name)
            else:
                error = redact(error)[:300]
                since = before.get("failing_since") if before.get("ok") is False else to_iso(now)
                entry.update(ok=False, last_ok=before.get("last_ok"), last_error=error, failing_since=since)
                if before.get("ok") is not False:
                    logger.warning(
                        "alert target %s failed: %s (not logged again until it delivers)", target.name, error
                    )
            known[target.id] = entry


def delivery_status(settings) -> list[dict]:
    """The last delivery of each configured target: name, kind, ok (None: nothing sent yet), last_error, since."""
    known = _read_state(settings).get("targets", {})
    out = []
    for target in targets(settings):
        entry = known.get(target.id, {})
        out.append(
            {
                "target": target.name,
                "kind": target.kind,
                "ok": entry.get("ok"),
                "last_attempt": entry.get("last_attempt"),
                "last_error": entry.get("last_error"),
                "failing_since": entry.get("failing_since"),
            }
        )
    return out


def test_targets(settings, *, now: datetime | None = None) -> list[dict]:
    """A test ping (healthchecks `/log`, which changes no check's state) and a test notification to each target."""
    from angles.services import healthchecks, notifications

    now = _now(now)
    host = socket.gethostname()
    text = f"Test from Angles AI Universe on {host} at {to_iso(now)[:19]}Z (backend_monitor.py --test-alerts)."
    jobs = []
    for target in targets(settings):
        if target.kind == "healthchecks":
            url = target.url if target.job else healthchecks.job_url(target.url, TEST_SLUG)
            jobs.append((target, lambda _, url=url: healthchecks.send(url, "log", text)))
        else:
            jobs.append((target, lambda t: notifications.send(t.url, "Angles AI Universe: test alert", text, "info")))
    if not jobs:
        return []
    results = _run_bounded(settings, jobs, NOTIFY_SECONDS, now)
    return [
        {"target": target.name, "kind": target.kind, "ok": results[target.id] is None, "reason": results[target.id]}
        for target, _ in jobs
    ]


def probe(target: Target, timeout: float = PROBE_SECONDS) -> str | None:
    """Whether the target's host accepts a TCP connection (nothing is sent); None when it does.

    Returns "not probed" for URLs whose service host is unknown (e-mail, most Apprise services).
    """
    from angles.services import notifications

    if target.kind == "apprise" and not notifications.is_valid(target.url):
        return "not a valid Apprise URL"
    try:
        parts = urlsplit(target.url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "not a valid URL"
    scheme = parts.scheme.lower()
    if not _looks_like_host(host):
        host = SERVICE_HOSTS.get(scheme, "")
        port = None
    if not host:
        return "not probed"
    port = port or HTTP_PORTS.get(scheme) or (443 if scheme.endswith("s") else None)
    if port is None:
        return "not probed"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{display_url(f'{scheme}://{host}:{port}')} unreachable ({exc.strerror or type(exc).__name__})"


def state_path(settings) -> Path:
    return Path(settings.data_dir) / STATE_FILE


def _read_state(settings) -> dict:
    try:
        state = json.loads(state_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


@contextmanager
def _state(settings):
    """Read-modify-write of the state file under an flock, so the daemon's threads and other processes agree."""
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = _read_state(settings)
        yield state
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
