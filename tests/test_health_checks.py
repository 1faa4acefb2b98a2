"""Each health check's verdicts at and around its thresholds, with injected values and local fakes."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from angles.config import load_settings
from angles.health.backup import BackupAgeCheck, BackupRemoteCheck, BackupVerificationCheck
from angles.health.base import Context
from angles.health.dashboard import DashboardCheck
from angles.health.database import DatabaseCheck
from angles.health.scheduler import SchedulerCheck, lock_held
from angles.health.services import AICheck, NotionCheck
from angles.health.sync import SyncRateCheck
from angles.health.system import CpuCheck, DiskCheck, LoadCheck, MemoryCheck

# Built at run time so no token-shaped literal is committed.
GOOD_KEY = "sk-" + "good-key-abcdefghijklmnopqrstuvwxyz"

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def run(check, settings, now=NOW):
    context = Context(settings, now)
    try:
        return check.run(settings, context)
    finally:
        context.close()


def settings_with(home, **env):
    base = {"ANGLES_HOME": str(home)}
    base.update({k: str(v) for k, v in env.items()})
    return load_settings(base, dotenv=False)


@pytest.mark.parametrize(
    ("check_class", "value", "expected"),
    [
        (CpuCheck, 79.9, "ok"),
        (CpuCheck, 80.0, "warning"),
        (CpuCheck, 95.0, "critical"),
        (MemoryCheck, 12.0, "ok"),
        (MemoryCheck, 80.0, "warning"),
        (MemoryCheck, 99.0, "critical"),
        (DiskCheck, 84.9, "ok"),
        (DiskCheck, 85.0, "warning"),
        (DiskCheck, 95.0, "critical"),
    ],
)
def test_resource_checks_follow_the_default_thresholds(settings, check_class, value, expected):
    result = run(check_class(sample=lambda: value), settings)
    assert result.status == expected
    assert result.value == f"{value:.1f}%"


def test_resource_thresholds_come_from_the_environment(home):
    settings = settings_with(home, CPU_WARNING=50, CPU_CRITICAL=60, DISK_WARNING=10, DISK_CRITICAL=20)
    assert run(CpuCheck(sample=lambda: 55.0), settings).status == "warning"
    assert run(CpuCheck(sample=lambda: 61.0), settings).status == "critical"
    assert run(DiskCheck(sample=lambda: 15.0), settings).status == "warning"


def test_load_is_judged_per_core(settings):
    cores = os.cpu_count() or 1
    assert run(LoadCheck(sample=lambda: (0, 1.0 * cores, 0)), settings).status == "ok"
    assert run(LoadCheck(sample=lambda: (0, 2.0 * cores, 0)), settings).status == "warning"
    assert run(LoadCheck(sample=lambda: (0, 5.0 * cores, 0)), settings).status == "critical"


def test_real_system_samples_are_percentages(settings):
    for check in (CpuCheck(), MemoryCheck(), DiskCheck()):
        result = run(check, settings)
        (metric,) = [v for k, v in result.metrics.items() if k.endswith("_percent")]
        assert 0.0 <= metric <= 100.0


def test_database_not_yet_created_is_a_warning_with_the_fix(settings):
    result = run(DatabaseCheck(), settings)
    assert result.status == "warning"
    assert "run_migration.py" in result.reason
    assert not settings.sqlite_path.exists(), "the monitor must not create the database"


def test_database_current_schema_is_ok(settings, sqlite_storage):
    from angles.storage.migrations import latest_version

    result = run(DatabaseCheck(), settings)
    assert result.status == "ok"
    assert result.metrics["schema_version"] == latest_version("sqlite")


def test_database_behind_latest_schema_is_a_warning(settings, sqlite_storage):
    sqlite_storage.conn.execute(
        "DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)"
    )
    result = run(DatabaseCheck(), settings)
    assert result.status == "warning"
    assert "behind" in result.reason


def test_corrupt_database_is_critical(settings):
    settings.sqlite_path.parent.mkdir(parents=True)
    settings.sqlite_path.write_bytes(b"this is not a database" * 200)
    result = run(DatabaseCheck(), settings)
    assert result.status == "critical"
    assert "unreachable" in result.reason


def test_unconfigured_notion_and_ai_are_ok_not_warnings(settings):
    assert run(NotionCheck(), settings).status == "ok"
    assert run(AICheck(), settings).status == "ok"


def test_notion_answering_with_a_good_token_is_ok(home, notion_api):
    settings = settings_with(
        home, NOTION_TOKEN=notion_api.token, NOTION_DATABASE_ID="db", NOTION_BASE_URL=notion_api.base_url
    )
    result = run(NotionCheck(), settings)
    assert result.status == "ok", result.reason
    assert result.metrics["notion_up"] == 1


def test_notion_refusing_the_token_is_a_warning_without_the_token(home, notion_api):
    settings = settings_with(
        home,
        NOTION_TOKEN="ntn_bad_token_1234567890abcdefgh",
        NOTION_DATABASE_ID="db",
        NOTION_BASE_URL=notion_api.base_url,
    )
    result = run(NotionCheck(), settings)
    assert result.status == "warning"
    assert "401" in result.reason
    assert "ntn_bad" not in result.reason


def test_unreachable_notion_is_a_warning_within_the_timeout(home, free_port):
    settings = settings_with(
        home,
        NOTION_TOKEN="ntn_x_1234567890abcdef",
        NOTION_DATABASE_ID="db",
        NOTION_BASE_URL=f"http://127.0.0.1:{free_port}",
    )
    result = run(NotionCheck(), settings)
    assert result.status == "warning"
    assert "unreachable" in result.reason


def test_slow_notion_times_out_as_a_warning(home, notion_api):
    notion_api.delay = 2
    settings = settings_with(
        home,
        NOTION_TOKEN=notion_api.token,
        NOTION_DATABASE_ID="db",
        NOTION_BASE_URL=notion_api.base_url,
        HEALTH_TIMEOUT_SECONDS=0.3,
    )
    result = run(NotionCheck(), settings)
    assert result.status == "warning"
    assert "did not answer within 0.3 s" in result.reason


def test_notion_rate_limiting_the_probe_is_ok_and_not_retried(home):
    from tests.fakes.notion_server import FakeNotion

    api = FakeNotion()
    url = api.start()
    try:
        api.retry_after = 30
        api.inject(429, route="/v1/users/me")
        settings = settings_with(
            home, NOTION_TOKEN=api.token, NOTION_DATABASE_ID="db", NOTION_BASE_URL=url, HEALTH_TIMEOUT_SECONDS=2
        )
        result = run(NotionCheck(), settings)
    finally:
        api.stop()
    assert result.status == "ok" and result.value == "HTTP 429"
    assert api.count(route="/v1/users/me") == 1


def test_ai_model_lookup_decides_reachability_without_spending_tokens(home):
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI(key=GOOD_KEY) as api:
        good = settings_with(home, OPENAI_API_KEY=GOOD_KEY, OPENAI_BASE_URL=api.base_url)
        bad = settings_with(
            home, OPENAI_API_KEY="sk-" + "bad-key-abcdefghijklmnopqrstuvwxyz", OPENAI_BASE_URL=api.base_url
        )
        unknown = settings_with(home, OPENAI_API_KEY=GOOD_KEY, OPENAI_BASE_URL=api.base_url, OPENAI_MODEL="gpt-nope")
        assert run(AICheck(), good).status == "ok"
        refused = run(AICheck(), bad)
        missing = run(AICheck(), unknown)
        chats = api.count()
    assert refused.status == "warning"
    assert "401" in refused.reason and "bad-key" not in refused.reason
    assert missing.status == "warning"
    assert "gpt-nope" in missing.reason and "OPENAI_MODEL" in missing.reason
    assert chats == 0


def test_unreachable_ai_server_is_a_warning(home, free_port):
    settings = settings_with(home, OPENAI_API_KEY=GOOD_KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{free_port}/v1")
    result = run(AICheck(), settings)
    assert result.status == "warning"
    assert "unreachable" in result.reason
    assert result.metrics["ai_up"] == 0


def test_backup_remote_missing_on_a_fresh_install_is_ok(settings):
    assert run(BackupRemoteCheck(), settings).status == "ok"


def test_backup_remote_local_bare_repository_is_reachable(settings):
    subprocess.run(["git", "init", "-q", "--bare", str(settings.backup_remote_url)], check=True)
    result = run(BackupRemoteCheck(), settings)
    assert result.status == "ok"
    assert result.metrics["backup_remote_up"] == 1


def test_backup_remote_that_does_not_answer_is_a_warning(home, tmp_path):
    settings = settings_with(home, BACKUP_REMOTE=str(tmp_path / "nowhere.git"))
    result = run(BackupRemoteCheck(), settings)
    assert result.status == "warning"
    assert "unreachable" in result.reason


def test_backup_remote_token_never_appears_in_the_reason(home, free_port):
    token = "ghp_" + "A" * 36
    settings = settings_with(home, BACKUP_REMOTE=f"http://127.0.0.1:{free_port}/owner/repo.git", GITHUB_TOKEN=token)
    result = run(BackupRemoteCheck(), settings)
    assert result.status == "warning"
    assert token not in result.reason


def record_backup(storage, hours_ago: float, result: str = "completed"):
    storage.set_state(
        "backup.last",
        json.dumps(
            {
                "time": iso(NOW - timedelta(hours=hours_ago)),
                "result": result,
                "commit": "abc123def4567890",
                "decisions": 3,
            }
        ),
    )


@pytest.mark.parametrize(
    ("hours_ago", "expected"), [(1, "ok"), (25.9, "ok"), (26, "warning"), (71, "warning"), (72, "critical")]
)
def test_backup_age_thresholds(settings, sqlite_storage, hours_ago, expected):
    record_backup(sqlite_storage, hours_ago)
    result = run(BackupAgeCheck(), settings)
    assert result.status == expected, result.reason
    assert result.metrics["backup_age_hours"] == pytest.approx(hours_ago, abs=0.01)


def test_failed_last_backup_is_a_warning(settings, sqlite_storage):
    record_backup(sqlite_storage, 1, result="failed")
    result = run(BackupAgeCheck(), settings)
    assert result.status == "warning"
    assert "failed" in result.reason


def test_no_backup_on_a_fresh_install_is_ok_but_later_a_warning(settings, sqlite_storage):
    assert run(BackupAgeCheck(), settings, now=datetime.now(UTC)).status == "ok"
    later = run(BackupAgeCheck(), settings, now=datetime.now(UTC) + timedelta(days=3))
    assert later.status == "warning"
    assert "run_backup_now.py" in later.reason


def test_corrupt_backup_state_is_a_warning_not_a_crash(settings, sqlite_storage):
    sqlite_storage.set_state("backup.last", "{not json")
    result = run(BackupAgeCheck(), settings)
    assert result.status == "warning"
    assert "not JSON" in result.reason


def test_backup_verification_age_and_result(settings, sqlite_storage):
    def verified(hours_ago, result="completed"):
        sqlite_storage.set_state(
            "backup.last_verified",
            json.dumps({"time": iso(NOW - timedelta(hours=hours_ago)), "result": result, "level": "checksums"}),
        )
        return run(BackupVerificationCheck(), settings)

    assert verified(24).status == "ok"
    assert verified(200).status == "warning"
    assert verified(1, result="failed").status == "warning"


def write_scheduler_state(settings, heartbeat_age_s: float, jobs=None, pid=None):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": pid or 4242,
        "host": "elsewhere",
        "started_at": iso(NOW - timedelta(hours=1)),
        "last_tick": iso(NOW - timedelta(seconds=heartbeat_age_s)),
        "leader": True,
        "jobs": jobs
        or {
            "health": {
                "schedule": "Every 5 minutes",
                "last_run": iso(NOW),
                "last_result": "completed",
                "last_duration_s": 0.4,
                "last_success": iso(NOW),
                "next_run": iso(NOW),
                "running": False,
            }
        },
    }
    (settings.data_dir / "scheduler_state.json").write_text(json.dumps(state))


@pytest.fixture
def scheduler_lock(settings):
    """Hold the scheduler's lock the way the daemon does: an exclusive flock on its own descriptor."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(settings.data_dir / "scheduler.lock", "w")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    yield handle
    handle.close()


def test_lock_probe_sees_a_held_lock_and_never_keeps_it(settings, scheduler_lock):
    assert lock_held(settings) is True
    scheduler_lock.close()
    assert lock_held(settings) is False
    with open(settings.data_dir / "scheduler.lock") as again:
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_scheduler_alive_with_fresh_heartbeat_is_ok(settings, scheduler_lock):
    write_scheduler_state(settings, 30)
    result = run(SchedulerCheck(), settings)
    assert result.status == "ok", result.reason
    assert result.details["jobs"]["health"]["last_result"] == "completed"
    assert result.metrics["scheduler_uptime_seconds"] == 3600


def test_scheduler_holding_its_lock_without_heartbeat_is_hung_and_critical(settings, scheduler_lock):
    write_scheduler_state(settings, 181)
    result = run(SchedulerCheck(), settings)
    assert result.status == "critical"
    assert "hung" in result.reason


def test_scheduler_not_running_is_a_warning_with_the_fix(settings):
    write_scheduler_state(settings, 10)
    result = run(SchedulerCheck(), settings)
    assert result.status == "warning"
    assert "scheduler.py" in result.reason


def test_health_job_inside_the_daemon_never_probes_its_own_lock(settings):
    write_scheduler_state(settings, 5, pid=os.getpid())

    def probe(_settings):
        raise AssertionError("probed the daemon's own lock")

    assert run(SchedulerCheck(lock_probe=probe), settings).status == "ok"


def test_scheduler_job_failure_is_a_warning(settings, scheduler_lock):
    write_scheduler_state(settings, 5, jobs={"backup": {"last_result": "failed", "schedule": "daily at 02:00"}})
    result = run(SchedulerCheck(), settings)
    assert result.status == "warning"
    assert "backup" in result.reason


def test_corrupt_scheduler_state_is_reported_not_raised(settings, scheduler_lock):
    (settings.data_dir / "scheduler_state.json").write_text('{"pid": 12, "jobs": [')
    result = run(SchedulerCheck(), settings)
    assert result.status == "warning"
    assert "not JSON" in result.reason


def test_dashboard_down_is_a_warning_and_up_is_ok(home, free_port):
    settings = settings_with(home, HEALTH_PORT=free_port)
    assert run(DashboardCheck(), settings).status == "warning"

    class Alive(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port), Alive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert run(DashboardCheck(), settings).status == "ok"
    finally:
        server.shutdown()
        server.server_close()


def record_syncs(storage, completed: int, failed: int):
    for status in ["completed"] * completed + ["failed"] * failed:
        storage.record_activity("memory_sync", "sync", status, "test run")


@pytest.mark.parametrize(
    ("completed", "failed", "expected"),
    [(10, 0, "ok"), (9, 1, "ok"), (8, 2, "warning"), (1, 1, "warning"), (1, 2, "critical")],
)
def test_sync_success_rate_thresholds(settings, sqlite_storage, completed, failed, expected):
    record_syncs(sqlite_storage, completed, failed)
    sqlite_storage.record_activity("memory_sync", "export", "failed", "not a sync run")
    sqlite_storage.record_activity("backup", "sync", "failed", "another agent")
    result = run(SyncRateCheck(), settings, now=datetime.now(UTC))
    assert result.status == expected, result.reason
    assert result.metrics["sync_runs_24h"] == completed + failed


def test_sync_runs_older_than_a_day_are_not_counted(settings, sqlite_storage):
    record_syncs(sqlite_storage, 0, 3)
    result = run(SyncRateCheck(), settings, now=datetime.now(UTC) + timedelta(hours=25))
    assert result.status == "ok"
    assert result.metrics["sync_runs_24h"] == 0


def test_inconsistent_thresholds_are_rejected_with_one_clear_line(home):
    from angles.errors import ConfigError

    with pytest.raises(ConfigError, match="BACKUP_CRITICAL_HOURS"):
        settings_with(home, BACKUP_WARNING_HOURS=50, BACKUP_CRITICAL_HOURS=10)
    with pytest.raises(ConfigError, match="SYNC_SUCCESS_CRITICAL"):
        settings_with(home, SYNC_SUCCESS_WARNING=50, SYNC_SUCCESS_CRITICAL=80)


def test_backup_remote_token_reaches_git_only_through_its_environment(home, monkeypatch):
    import base64

    import git.cmd

    seen = []

    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = "ghp_" + "Z" * 36
    launched = []
    real_popen = git.cmd.safer_popen

    def spy(command, **kwargs):
        launched.append((command, kwargs.get("env") or {}))
        return real_popen(command, **kwargs)

    monkeypatch.setattr(git.cmd, "safer_popen", spy)
    try:
        settings = settings_with(
            home, BACKUP_REMOTE=f"http://127.0.0.1:{server.server_address[1]}/o/r.git", GITHUB_TOKEN=token
        )
        result = run(BackupRemoteCheck(), settings)
    finally:
        server.shutdown()
        server.server_close()
    assert result.status == "warning"
    assert "authentication" in result.reason
    expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert expected in seen
    assert launched, "the check ran no git process"
    assert all(token not in " ".join(map(str, command)) for command, _ in launched)
    assert any(token in env.values() for _, env in launched)
    assert token not in result.reason


def test_backup_remote_that_never_answers_is_a_warning_within_the_timeout(home):
    import socket

    # Accepts the connection and never answers, like a remote behind a black-holing firewall.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        settings = settings_with(home, BACKUP_REMOTE=f"http://127.0.0.1:{port}/o/r.git", HEALTH_TIMEOUT_SECONDS=0.5)
        result = run(BackupRemoteCheck(), settings)
    assert result.status == "warning"
    assert "did not answer within 0.5 s" in result.reason
    assert result.metrics["backup_remote_up"] == 0


def test_a_backed_up_credential_warns_naming_the_decision_until_it_is_edited(home):
    from angles.actions.backup import run_backup
    from angles.engines.decision_model import validate
    from angles.health.backup import CredentialContentCheck
    from angles.storage import migrations, open_storage

    settings = settings_with(home)
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    rows = [validate({"decision": f"decision {n}", "type": "process"}) for n in range(5)]
    rows[2]["comment"] = f"CI token {token}"
    with open_storage(settings) as storage:
        migrations.migrate(storage)
        storage.upsert_decisions(rows)
    assert run(CredentialContentCheck(), settings).status == "ok"
    run_backup(settings)

    result = run(CredentialContentCheck(), settings)

    assert result.status == "warning" and rows[2]["id"] in result.reason and token not in result.reason
    with open_storage(settings) as storage:
        storage.update_decision(rows[2]["id"], {"comment": "CI token rotated and removed"})
    assert run(CredentialContentCheck(), settings).status == "ok"


def test_failures_after_a_good_backup_name_the_good_one_and_count_the_failures(home):
    from angles.actions.backup import run_backup
    from angles.engines.decision_model import validate
    from angles.errors import AnglesError
    from angles.storage import migrations, open_storage

    settings = settings_with(home)
    with open_storage(settings) as storage:
        migrations.migrate(storage)
        storage.upsert_decisions([validate({"decision": "first", "type": "process"})])
    good = run_backup(settings)
    hook = home / "data" / "backup-remote.git" / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'disk quota exceeded' >&2\nexit 1\n")
    hook.chmod(0o755)
    for n in range(2):
        with open_storage(settings) as storage:
            storage.upsert_decisions([validate({"decision": f"later {n}", "type": "process"})])
        with pytest.raises(AnglesError):
            run_backup(settings)

    result = run(BackupAgeCheck(), settings, now=datetime.now(UTC))

    assert result.status == "warning"
    assert "only recorded" not in result.reason
    assert "2 failure(s) since the last good backup" in result.reason and good["commit"][:12] in result.reason
    assert result.details["last_success"] and result.metrics["backup_age_hours"] < 1
