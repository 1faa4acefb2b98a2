"""Alerts reach a person: healthchecks pings around every run, one notification per change, fail-soft, no secrets."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from angles import alerts
from angles.config import load_settings
from angles.engines import alerting
from angles.health.base import CRITICAL, OK, WARNING, Check, Context
from tests.fakes.alert_jobs import PLANTED
from tests.fakes.alert_receiver import AlertReceiver
from tests.fakes.daemon import write_jobs

OPENAI_KEY = "sk-" + "planted0penAIkey0123456789abcdef"
NOTION_KEY = "ntn_" + "planted0Notion0Token0123456789"
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def receiver():
    found = AlertReceiver().start()
    yield found
    found.stop()


@pytest.fixture
def configure(home, clean_env):
    """Settings with the given variables (and planted credentials) set, as the scripts would read them."""

    def make(**env):
        for name, value in {"OPENAI_API_KEY": OPENAI_KEY, "NOTION_TOKEN": NOTION_KEY, **env}.items():
            clean_env.setenv(name, value)
        return load_settings()

    return make


def assert_no_secret(text: str) -> None:
    for planted in (PLANTED, OPENAI_KEY, NOTION_KEY):
        assert planted not in text


def messages(receiver) -> list[dict]:
    return [w.payload for w in receiver.webhooks()]


def titles(receiver) -> list[str]:
    return [m["title"] for m in messages(receiver)]


class Fixed(Check):
    """A check whose verdict the test sets."""

    def __init__(self, name: str, status: str = OK, reason: str = "fine"):
        self.name, self.label, self.status, self.reason = name, name.capitalize(), status, reason

    def run(self, settings, context: Context):
        return self.result(self.status, self.status, self.reason)


# The scheduler, as an operator runs it


def test_run_now_pings_start_then_fail_with_the_runs_redacted_lines_and_notifies_once_then_recovers(
    home, receiver, run_script
):
    flag = home / "failing"
    flag.touch()
    write_jobs(home, [{"name": "flaky", "call": "tests.fakes.alert_jobs:flaky", "at": "02:00"}])
    env = {
        "SCHEDULER_JOBS_FILE": "jobs.json",
        "FAIL_FLAG": str(flag),
        "HEALTHCHECKS_URL": receiver.ping_base,
        "ALERT_URLS": receiver.webhook_url(),
        "OPENAI_API_KEY": OPENAI_KEY,
    }

    first = run_script("scheduler.py", "--run-now", "flaky", env=env)
    second = run_script("scheduler.py", "--run-now", "flaky", env=env)
    assert first.returncode == second.returncode == 1

    check = f"{receiver.ping_key}/flaky"
    pings = receiver.pings(check)
    assert [p.signal for p in pings] == ["start", "fail", "start", "fail"]
    assert all(p.query.get("create") == "1" for p in pings)
    assert pings[0].query["rid"] == pings[1].query["rid"] != pings[2].query["rid"]
    report = pings[1].body
    assert "flaky working with [REDACTED]" in report and "RuntimeError: remote refused [REDACTED]" in report
    assert receiver.checks[check] == "down"
    assert titles(receiver) == ["flaky failed"], "a job failing twice is one change, one notification"
    assert "RuntimeError: remote refused [REDACTED]" in messages(receiver)[0]["message"]

    flag.unlink()
    assert run_script("scheduler.py", "--run-now", "flaky", env=env).returncode == 0
    assert [p.signal for p in receiver.pings(check)][-2:] == ["start", "success"]
    assert receiver.checks[check] == "up"
    assert titles(receiver) == ["flaky failed", "flaky recovered"]
    assert_no_secret(receiver.everything_received())
    assert receiver.ping_key not in (home / "logs" / "active" / "scheduler.log").read_text()


def test_a_fail_ping_carries_at_most_the_last_100_lines_and_10_kb(home, receiver, run_script):
    write_jobs(home, [{"name": "chatty", "call": "tests.fakes.alert_jobs:chatty_failure", "at": "02:00"}])
    env = {"SCHEDULER_JOBS_FILE": "jobs.json", "HEALTHCHECKS_URL": receiver.ping_base}
    assert run_script("scheduler.py", "--run-now", "chatty", env=env).returncode == 3
    fail = receiver.pings(f"{receiver.ping_key}/chatty")[-1]
    assert fail.signal == "fail"
    lines = fail.body.splitlines()
    assert len(lines) <= 100 and len(fail.body.encode()) <= 10_000
    assert "chatty line 399" in lines[-2] and lines[-1] == "chatty failed: exit code 3"


def test_the_daemon_pings_every_scheduled_run_and_a_job_override_takes_its_own_url(home, receiver):
    from tests.fakes.daemon import start, stop, wait_for

    write_jobs(
        home,
        [
            {"name": "steady", "call": "tests.fakes.alert_jobs:quick", "every_seconds": 0.5},
            {"name": "backup", "call": "tests.fakes.alert_jobs:quick", "every_seconds": 0.5},
        ],
    )
    override = receiver.add_uuid_check()
    check = override.rsplit("/", 1)[1]
    proc = start(
        home,
        SCHEDULER_JOBS_FILE="jobs.json",
        HEALTHCHECKS_URL=receiver.ping_base,
        HEALTHCHECKS_URL_BACKUP=override,
    )
    try:
        wait_for(lambda: len(receiver.pings(check)) >= 4, timeout=30, what="backup pings on its own URL")
        wait_for(lambda: len(receiver.pings(f"{receiver.ping_key}/steady")) >= 4, timeout=30, what="steady pings")
    finally:
        assert stop(proc) == 0
    assert receiver.pings(f"{receiver.ping_key}/backup") == []
    assert {p.signal for p in receiver.pings(check)} == {"start", "success"}


# Fail-soft


@pytest.mark.parametrize("fault", ["down", "500"])
def test_a_target_that_is_down_or_answers_500_never_fails_the_job_and_is_logged_once(home, receiver, run_script, fault):
    if fault == "down":
        receiver.stop()
    else:
        receiver.mode = "500"
    write_jobs(home, [{"name": "steady", "call": "tests.fakes.alert_jobs:quick", "at": "02:00"}])
    env = {
        "SCHEDULER_JOBS_FILE": "jobs.json",
        "HEALTHCHECKS_URL": receiver.ping_base,
        "ALERT_URLS": receiver.webhook_url(),
    }
    for _ in range(2):
        done = run_script("scheduler.py", "--run-now", "steady", env=env)
        assert done.returncode == 0 and "Traceback" not in done.stderr
    log = (home / "logs" / "active" / "scheduler.log").read_text()
    assert log.count("alert target healthchecks http://127.0.0.1") == 1
    assert "WARNING" in log and receiver.ping_key not in log
    state = json.loads((home / "data" / "alert_state.json").read_text())
    assert receiver.ping_key not in json.dumps(state)


@pytest.mark.slow
def test_a_hanging_target_delays_a_run_by_at_most_about_10_s_per_target(home, receiver, run_script):
    receiver.mode = "hang"
    flag = home / "failing"
    flag.touch()
    write_jobs(home, [{"name": "flaky", "call": "tests.fakes.alert_jobs:flaky", "at": "02:00"}])
    env = {
        "SCHEDULER_JOBS_FILE": "jobs.json",
        "FAIL_FLAG": str(flag),
        "HEALTHCHECKS_URL": receiver.ping_base,
        "ALERT_URLS": receiver.webhook_url(),
    }
    started = time.monotonic()
    done = run_script("scheduler.py", "--run-now", "flaky", env=env, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 1 and "Traceback" not in done.stderr
    # Two hung targets, a 30 s hang each: the run went on without waiting them out.
    assert elapsed < 2 * 10 + 8
    assert receiver.everything_received().count("POST ") == 3, "start ping, fail ping and notification were tried"
    log = (home / "logs" / "active" / "scheduler.log").read_text()
    assert "flaky failed" in log and "alert target" in log


def test_the_alerts_check_warns_while_the_last_delivery_failed_and_clears_when_one_succeeds(configure, receiver):
    from angles.health.alerts import AlertsCheck

    settings = configure(ALERT_URLS=receiver.webhook_url())
    check = AlertsCheck()
    assert check.run(settings, Context(settings)).status == OK
    receiver.mode = "500"
    alerts.job_finished(settings, "backup", "failed", "KeyError: {'remote'} not in {0}", now=T0)
    result = check.run(settings, Context(settings))
    assert result.status == WARNING and "json://127.0.0.1" in result.reason and "500" in result.reason
    assert "/hook/alerts" not in result.reason
    receiver.mode = "ok"
    alerts.job_finished(settings, "backup", "completed", "exit code 0", now=T0 + timedelta(hours=1))
    assert check.run(settings, Context(settings)).status == OK
    assert titles(receiver) == ["backup recovered"], "the failure was lost to the 500; the recovery arrives"
    assert "it had been failing since 2026-03-02T02:00:00Z" in messages(receiver)[0]["message"]


# What is notified, and when


def test_health_changes_notify_once_per_change_naming_the_checks_and_recover(configure, receiver):
    from angles.actions.monitor import run_monitor

    settings = configure(ALERT_URLS=receiver.webhook_url())
    disk, cpu = Fixed("disk"), Fixed("cpu")
    checks = [disk, cpu]

    def monitor(minutes: int):
        run_monitor(settings, checks=checks, now=T0 + timedelta(minutes=minutes))

    monitor(0)
    assert titles(receiver) == [], "ok from the start is nothing to tell"
    disk.status, disk.reason = WARNING, "disk 88% used"
    monitor(5)
    monitor(10)
    assert titles(receiver) == ["Health warning"]
    assert "Disk: ok -> warning (disk 88% used)" in messages(receiver)[0]["message"]
    disk.status, disk.reason = CRITICAL, "disk 97% used"
    cpu.status, cpu.reason = WARNING, "cpu 85%"
    monitor(15)
    assert titles(receiver)[-1] == "Health critical"
    text = messages(receiver)[-1]["message"]
    assert "Disk: warning -> critical (disk 97% used)" in text and "Cpu: ok -> warning (cpu 85%)" in text
    assert messages(receiver)[-1]["type"] == "failure"
    disk.status = cpu.status = OK
    monitor(20)
    monitor(25)
    assert titles(receiver) == ["Health warning", "Health critical", "Health ok again"]
    assert "Disk: critical -> ok" in messages(receiver)[-1]["message"]


def test_a_health_job_failing_because_health_is_critical_is_told_once_as_the_health_change(configure, receiver):
    from angles.actions.monitor import run_monitor

    settings = configure(HEALTHCHECKS_URL=receiver.ping_base, ALERT_URLS=receiver.webhook_url())
    alerts.job_started(settings, "health_check")
    result = run_monitor(settings, checks=[Fixed("disk", CRITICAL, "disk 97% used")], now=T0)
    assert result["exit_code"] == 5
    alerts.job_finished(settings, "health_check", "failed", "exit code 5, status critical", now=T0)
    assert titles(receiver) == ["Health critical"]
    assert [p.signal for p in receiver.pings(f"{receiver.ping_key}/health_check")] == ["start", "fail"]


def test_while_critical_a_reminder_comes_every_alert_repeat_hours(configure, receiver):
    settings = configure(ALERT_URLS=receiver.webhook_url(), ALERT_REPEAT_HOURS="6")
    disk = {"label": "Disk", "status": CRITICAL, "reason": "97%"}
    doc = {"status": CRITICAL, "host": "vault", "checks": {"disk": disk}}
    for hours in (0, 1, 5.9, 6, 7, 11.9, 12):
        alerts.health_evaluated(settings, doc, now=T0 + timedelta(hours=hours))
    assert titles(receiver) == ["Health critical", "Health still critical", "Health still critical"]


def test_a_failed_job_is_reminded_by_the_health_runs_until_it_recovers(configure, receiver):
    settings = configure(ALERT_URLS=receiver.webhook_url())
    ok_doc = {"status": OK, "checks": {"disk": {"status": OK, "reason": "fine"}}}
    alerts.job_finished(settings, "backup", "failed", "BackupAuthError: token refused {scope: repo}", now=T0)
    alerts.health_evaluated(settings, ok_doc, now=T0 + timedelta(hours=23))
    alerts.health_evaluated(settings, ok_doc, now=T0 + timedelta(hours=24))
    alerts.health_evaluated(settings, ok_doc, now=T0 + timedelta(hours=25))
    assert titles(receiver) == ["backup failed", "backup still failing"]
    assert "BackupAuthError: token refused {scope: repo}" in messages(receiver)[1]["message"]


def test_alert_level_critical_keeps_warnings_quiet(configure, receiver):
    settings = configure(ALERT_URLS=receiver.webhook_url(), ALERT_LEVEL="critical")
    for minutes, status in enumerate((WARNING, CRITICAL, WARNING, OK)):
        doc = {"status": status, "checks": {"load": {"label": "Load", "status": status, "reason": "load"}}}
        alerts.health_evaluated(settings, doc, now=T0 + timedelta(minutes=minutes))
    assert titles(receiver) == ["Health critical", "Health warning (no longer critical)"]


def test_a_backup_older_than_26_hours_is_told_even_while_health_is_already_warning(configure, receiver):
    settings = configure(ALERT_URLS=receiver.webhook_url())
    load = {"label": "Load", "status": WARNING, "reason": "load 2.1"}
    backup = {"label": "Backup", "status": OK, "reason": "last backup 3.0 h ago succeeded"}

    def evaluate(hours: float, age: float, status: str = OK):
        doc = {
            "status": WARNING,
            "checks": {"load": load, "backup": {**backup, "status": status}},
            "metrics": {"backup_age_hours": age},
        }
        alerts.health_evaluated(settings, doc, now=T0 + timedelta(hours=hours))

    evaluate(0, 3.0)
    evaluate(1, 4.0, WARNING)  # the last run failed: that is the backup job's alert, not an overdue backup
    evaluate(24, 27.0, WARNING)
    evaluate(25, 28.0, WARNING)
    evaluate(26, 0.5)
    assert titles(receiver) == ["Health warning", "Backup overdue", "Backup current again"]
    assert "the last good backup is 27.0 h old (alert after 26 h)" in messages(receiver)[1]["message"]


def test_a_stale_backup_that_changes_the_health_status_is_one_notification(configure, receiver):
    settings = configure(ALERT_URLS=receiver.webhook_url())
    fresh = {"label": "Backup", "status": OK, "reason": "last backup 3.0 h ago succeeded"}
    stale = {"label": "Backup", "status": WARNING, "reason": "last successful backup 27.0 h ago (warning after 26 h)"}
    doc = {"status": OK, "checks": {"backup": fresh}, "metrics": {"backup_age_hours": 3.0}}
    alerts.health_evaluated(settings, doc, now=T0)
    doc = {"status": WARNING, "checks": {"backup": stale}, "metrics": {"backup_age_hours": 27.0}}
    alerts.health_evaluated(settings, doc, now=T0 + timedelta(hours=24))
    assert titles(receiver) == ["Health warning"]
    assert "Backup: ok -> warning (last successful backup 27.0 h ago" in messages(receiver)[0]["message"]


def test_the_dashboard_tells_when_the_scheduler_heartbeat_goes_stale_and_when_it_beats_again(configure, receiver):
    settings = configure(ALERT_URLS=receiver.webhook_url())

    def beat(last_tick: datetime) -> dict:
        return {"pid": 1, "host": "vault", "last_tick": last_tick.isoformat(), "tick_seconds": 1.0}

    alerts.heartbeat_evaluated(settings, beat(T0), now=T0 + timedelta(seconds=30))
    alerts.heartbeat_evaluated(settings, beat(T0), now=T0 + timedelta(minutes=10))
    alerts.heartbeat_evaluated(settings, beat(T0), now=T0 + timedelta(minutes=11))
    alerts.heartbeat_evaluated(settings, beat(T0 + timedelta(minutes=12)), now=T0 + timedelta(minutes=12))
    assert titles(receiver) == ["Scheduler down", "Scheduler running again"]
    assert "no scheduler heartbeat on vault for 600 s" in messages(receiver)[0]["message"]


def test_the_dashboard_process_watches_the_heartbeat_in_the_background(configure, receiver):
    import threading

    settings = configure(ALERT_URLS=receiver.webhook_url())
    stale = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "scheduler_state.json").write_text(json.dumps({"pid": 1, "last_tick": stale}))
    stop = threading.Event()
    thread = alerts.watch_heartbeat(settings, stop, interval=0.1)
    try:
        deadline = time.monotonic() + 20
        while not receiver.webhooks() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
    assert titles(receiver) == ["Scheduler down"]


def test_decisions_one_per_change_reminder_and_recovery():
    def run(levels, threshold="warning", repeat=24.0):
        record, kinds = None, []
        for hours, level in levels:
            decision = alerting.decide(
                record, level, T0 + timedelta(hours=hours), threshold=threshold, repeat_hours=repeat
            )
            record = decision.record
            kinds.append(decision.kind)
        return kinds

    assert run([(0, OK), (1, OK)]) == [None, None]
    assert run([(0, WARNING), (1, WARNING), (30, WARNING)]) == ["alert", None, None], "no reminder below critical"
    assert run([(0, CRITICAL), (23, CRITICAL), (24, CRITICAL), (47, CRITICAL), (48, CRITICAL), (49, OK)]) == [
        "alert",
        None,
        "reminder",
        None,
        "reminder",
        "recovery",
    ]
    assert run([(0, WARNING), (1, CRITICAL), (2, WARNING), (3, OK)]) == ["alert", "alert", "alert", "recovery"]
    assert run([(0, WARNING), (1, CRITICAL), (2, WARNING)], threshold="critical") == [None, "alert", "recovery"]
    assert run([(0, CRITICAL), (100, CRITICAL)], repeat=0) == ["alert", None]


# Secrets


def test_no_planted_secret_leaves_in_any_ping_or_notification(configure, receiver, caplog):
    settings = configure(HEALTHCHECKS_URL=receiver.ping_base, ALERT_URLS=receiver.webhook_url())
    log = logging.getLogger("tests.fakes.alert_jobs")
    with caplog.at_level(logging.INFO):
        alerts.job_started(settings, "memory_sync")
        log.info("calling Notion with %s and OpenAI with %s (%s)", NOTION_KEY, OPENAI_KEY, PLANTED)
        alerts.job_finished(settings, "memory_sync", "failed", f"ExternalServiceError: {OPENAI_KEY} refused", now=T0)
        doc = {"status": CRITICAL, "checks": {"ai": {"label": "AI", "status": CRITICAL, "reason": f"key {OPENAI_KEY}"}}}
        alerts.health_evaluated(settings, doc, now=T0)
    received = receiver.everything_received()
    assert "calling Notion with [REDACTED]" in received
    assert len(receiver.webhooks()) == 2
    assert_no_secret(received)


# The operator's commands


def test_test_alerts_prints_pass_or_fail_per_target_and_exits_3_when_one_fails(home, receiver, run_script):
    env = {
        "HEALTHCHECKS_URL": receiver.ping_base,
        "ALERT_URLS": f"{receiver.webhook_url()},json://127.0.0.1:9/hook/nobody",
    }
    done = run_script("backend_monitor.py", "--test-alerts", env=env)
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert f"PASS  healthchecks http://127.0.0.1:{receiver.port}" in lines
    assert f"PASS  json://127.0.0.1:{receiver.port}" in lines
    assert any(line.startswith("FAIL  json://127.0.0.1:9  (") for line in lines)
    assert receiver.ping_key not in done.stdout and "/hook/" not in done.stdout
    assert [p.signal for p in receiver.pings(f"{receiver.ping_key}/health_check")] == ["log"]
    assert receiver.checks[f"{receiver.ping_key}/health_check"] == "new", "a test ping changes no check's state"
    assert titles(receiver) == ["Angles AI Universe: test alert"]

    env["ALERT_URLS"] = receiver.webhook_url()
    assert run_script("backend_monitor.py", "--test-alerts", env=env).returncode == 0
    nothing = run_script("backend_monitor.py", "--test-alerts")
    assert nothing.returncode == 1 and "no alert target configured" in nothing.stderr


def test_verify_lists_each_alert_target_and_warns_when_one_is_unreachable(configure, receiver):
    from angles.actions.verify import run_verify_deployment
    from angles.health.alerts import AlertsCheck

    settings = configure(
        HEALTHCHECKS_URL=receiver.ping_base,
        ALERT_URLS=f"{receiver.webhook_url()},json://127.0.0.1:9/hook/nobody,slack://T0ken1/B0ken2/C0ken3",
    )
    result = run_verify_deployment(settings, checks=[("alerts", AlertsCheck())])
    (line,) = result["checks"]
    assert line["status"] == "WARN"
    assert f"healthchecks http://127.0.0.1:{receiver.port} reachable" in line["detail"]
    assert f"json://127.0.0.1:{receiver.port} reachable" in line["detail"]
    assert "json://127.0.0.1:9: " in line["detail"]
    assert "slack://…" in line["detail"]
    assert receiver.ping_key not in json.dumps(result) and "T0ken1" not in json.dumps(result)
    assert receiver.everything_received() == "", "verifying sends nothing"


def test_alert_settings_are_validated_in_one_line(configure):
    from angles.errors import ConfigError

    with pytest.raises(ConfigError, match="ALERT_LEVEL"):
        configure(ALERT_LEVEL="loud")
    with pytest.raises(ConfigError, match="HEALTHCHECKS_URL_BACKUP"):
        configure(ALERT_LEVEL="critical", HEALTHCHECKS_URL_BACKUP="hc-ping.com/abc")
