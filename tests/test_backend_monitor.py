"""backend_monitor.py as an operator runs it, and run_monitor as the scheduler calls it."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from angles.actions.monitor import run_monitor
from angles.config import load_settings
from angles.health.backup import BackupAgeCheck
from angles.health.base import CRITICAL, OK, Check
from angles.health.database import DatabaseCheck
from angles.health.health_file import history_path, log_path, snapshot_path
from angles.health.scheduler import SchedulerCheck
from angles.health.sync import SyncRateCheck
from angles.health.system import CpuCheck, DiskCheck, LoadCheck, MemoryCheck

# Checks that need no network and no other running service, so results depend only on the test.
QUIET_CHECKS = "HEALTH_DISABLED_CHECKS"


def test_embedded_default_run_writes_snapshot_log_and_history(run_script, home):
    done = run_script("backend_monitor.py", env={"HEALTH_PORT": "1"})
    snapshot = json.loads((home / "logs/active/system_health.json").read_text())
    assert done.returncode == (5 if snapshot["status"] == "critical" else 0), done.stderr
    assert snapshot["status"] in ("ok", "warning", "critical")
    for name in ("cpu", "memory", "disk", "load", "database", "scheduler", "dashboard", "sync", "backup"):
        check = snapshot["checks"][name]
        assert check["status"] in ("ok", "warning", "critical")
        assert check["reason"]
    log = (home / "logs/active/system_health.log").read_text()
    for label in ("CPU: ", "Memory: ", "Disk: ", "Load: ", "Database: ", "Overall: "):
        assert f" {label}" in log
    cpu_line = next(line for line in log.splitlines() if " CPU: " in line)
    assert cpu_line.split(" CPU: ")[1].split()[0].endswith("%")
    assert "CPU" in done.stdout and "Overall:" in done.stdout
    assert (home / "data/health_history.jsonl").read_text().count("\n") == 1
    assert not (home / "data/angles.db").exists(), "the monitor must not create the database"


def test_critical_check_exits_5_and_says_why(run_script, home):
    done = run_script("backend_monitor.py", env={"DISK_WARNING": "0", "DISK_CRITICAL": "0", "HEALTH_PORT": "1"})
    assert done.returncode == 5
    assert "CRITICAL" in done.stdout
    snapshot = json.loads((home / "logs/active/system_health.json").read_text())
    assert snapshot["status"] == "critical"
    assert snapshot["checks"]["disk"]["status"] == "critical"
    assert "Traceback" not in done.stderr


def test_corrupt_database_exits_5(run_script, home):
    (home / "data").mkdir()
    (home / "data/angles.db").write_bytes(b"garbage" * 1000)
    done = run_script("backend_monitor.py", "--json", env={QUIET_CHECKS: "cpu,load,memory,disk,dashboard"})
    assert done.returncode == 5
    result = json.loads(done.stdout)
    assert result["checks"]["database"]["status"] == "critical"
    assert result["exit_code"] == 5


def test_json_output_is_the_snapshot(run_script, home):
    done = run_script("backend_monitor.py", "--json", env={QUIET_CHECKS: "cpu,load,memory,disk,dashboard"})
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    written = json.loads((home / "logs/active/system_health.json").read_text())
    assert printed["checks"] == written["checks"]
    assert printed["time"] == written["time"]


def test_quiet_prints_nothing_when_all_is_ok(run_script, home):
    only_ok = "cpu,load,memory,disk,dashboard,scheduler,database"
    done = run_script("backend_monitor.py", "--quiet", env={QUIET_CHECKS: only_ok})
    assert done.returncode == 0
    assert done.stdout == ""
    warned = run_script("backend_monitor.py", "--quiet", env={QUIET_CHECKS: "cpu,load,memory,disk,dashboard"})
    assert "Scheduler" in warned.stdout and "CPU" not in warned.stdout


def test_malformed_threshold_is_one_clear_line_and_exit_1(run_script):
    done = run_script("backend_monitor.py", env={"LOAD_WARNING": "high"})
    assert done.returncode == 1
    assert done.stderr.strip() == "error: LOAD_WARNING='high' is not a number"


def test_cpu_sampling_never_blocks_a_whole_second(settings, monkeypatch):
    import psutil

    intervals = []

    def fake(interval=None, percpu=False):
        intervals.append(interval)
        return 12.5

    monkeypatch.setattr(psutil, "cpu_percent", fake)
    result = CpuCheck().run(settings, None)
    assert result.value == "12.5%"
    assert intervals and all(i is None or i < 1 for i in intervals)


class Fixed(Check):
    """A check with a fixed verdict, for exercising the monitor itself."""

    def __init__(self, name, status=OK, reason="fine", waits=False, delay=0.0, error=None):
        self.name, self.label, self.status, self.text, self.waits = name, name.title(), status, reason, waits
        self.delay, self.error = delay, error

    def run(self, settings, context):
        if self.delay:
            threading.Event().wait(self.delay)
        if self.error:
            raise self.error
        return self.result(self.status, "v", self.text)


def test_secrets_in_a_check_reason_never_reach_files_or_output(home, clean_env):
    token = "ntn_" + "S" * 30
    settings = load_settings({"ANGLES_HOME": str(home), "NOTION_TOKEN": token}, dotenv=False)
    result = run_monitor(settings, checks=[Fixed("leaky", CRITICAL, f"bad token {token} and sk-proj-{'x' * 30}")])
    assert result["exit_code"] == 5
    for path in (snapshot_path(settings), log_path(settings)):
        text = path.read_text()
        assert token not in text and "sk-proj-" not in text
        assert "[REDACTED]" in text
    assert token not in json.dumps(result)


def test_disabled_checks_do_not_run(home):
    settings = load_settings({"ANGLES_HOME": str(home), "HEALTH_DISABLED_CHECKS": "Dashboard, sync"}, dotenv=False)
    result = run_monitor(settings, checks=[Fixed("dashboard", CRITICAL), Fixed("sync", CRITICAL), Fixed("cpu")])
    assert list(result["checks"]) == ["cpu"]
    assert result["exit_code"] == 0


def test_a_check_that_breaks_is_reported_and_the_rest_still_run(settings):
    result = run_monitor(settings, checks=[Fixed("broken", error=RuntimeError("boom")), Fixed("cpu", waits=True)])
    assert result["checks"]["broken"]["status"] == "warning"
    assert "RuntimeError: boom" in result["checks"]["broken"]["reason"]
    assert result["checks"]["cpu"]["status"] == "ok"


def test_a_hung_check_is_cut_off_at_the_deadline(home):
    settings = load_settings({"ANGLES_HOME": str(home), "HEALTH_TIMEOUT_SECONDS": "0.1"}, dotenv=False)
    result = run_monitor(settings, checks=[Fixed("slow", waits=True, delay=5), Fixed("cpu")])
    assert result["checks"]["slow"]["status"] == "warning"
    assert "did not finish" in result["checks"]["slow"]["reason"]
    assert result["duration_s"] < 5


def test_checks_that_wait_run_in_parallel(settings):
    started = datetime.now(UTC)
    result = run_monitor(settings, checks=[Fixed(f"net{i}", waits=True, delay=0.5) for i in range(6)])
    elapsed = (datetime.now(UTC) - started).total_seconds()
    assert result["status"] == "ok"
    assert elapsed < 6 * 0.5, "six half-second checks ran one after another"


def test_unwritable_logs_directory_is_reported_not_raised(home):
    settings = load_settings({"ANGLES_HOME": str(home)}, dotenv=False)
    (home / "logs").mkdir()
    (home / "logs/active").write_text("a file where the directory should be")
    result = run_monitor(settings, checks=[Fixed("cpu")])
    assert result["write_error"]
    assert result["exit_code"] == 0


def test_snapshot_and_history_stay_bounded_over_1000_runs(settings, sqlite_storage):
    sqlite_storage.record_activity("memory_sync", "sync", "completed", "ok")
    checks = [
        CpuCheck(sample=lambda: 42.0),
        MemoryCheck(sample=lambda: 55.5),
        DiskCheck(sample=lambda: 61.25),
        LoadCheck(sample=lambda: (0.5, 0.4, 0.3)),
        DatabaseCheck(),
        BackupAgeCheck(),
        SchedulerCheck(lock_probe=lambda s: False),
        SyncRateCheck(),
    ]
    start = datetime(2026, 11, 20, tzinfo=UTC)
    sizes = []
    for i in range(1000):
        run_monitor(settings, checks=checks, now=start + timedelta(minutes=5 * i))
        if i in (9, 499, 999):
            sizes.append(snapshot_path(settings).stat().st_size)
    assert max(sizes) - min(sizes) <= 16, sizes
    assert sizes[-1] < 16_000
    history = history_path(settings).read_text().splitlines()
    assert len(history) == 24 * 12 + 1
    assert json.loads(history[-1])["cpu"] == 42.0
    log_lines = log_path(settings).read_text().splitlines()
    assert sum(1 for line in log_lines if " CPU: 42.0% ok" in line) == 1000


@pytest.mark.slow
def test_concurrent_runs_never_leave_a_torn_snapshot(settings):
    errors = []

    def reader():
        for _ in range(400):
            try:
                text = snapshot_path(settings).read_text()
                json.loads(text)
            except FileNotFoundError:
                continue
            except ValueError as exc:
                errors.append(exc)

    def writer():
        for _ in range(40):
            run_monitor(settings, checks=[Fixed("cpu"), Fixed("disk")])

    threads = [threading.Thread(target=reader), threading.Thread(target=writer), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = history_path(settings).read_text().splitlines()
    assert len(history) == 80


def test_a_database_that_never_answers_is_critical_at_the_deadline(home):
    class StuckDatabase(DatabaseCheck):
        def run(self, settings, context):
            threading.Event().wait(10)

    settings = load_settings({"ANGLES_HOME": str(home), "HEALTH_TIMEOUT_SECONDS": "0.1"}, dotenv=False)
    result = run_monitor(settings, checks=[StuckDatabase(), Fixed("cpu", waits=True)])
    assert result["checks"]["database"]["status"] == "critical"
    assert "did not finish" in result["checks"]["database"]["reason"]
    assert result["checks"]["cpu"]["status"] == "ok"
    assert result["exit_code"] == 5


def _damaged_vault(run_script, home, rows: int = 3000):
    """A migrated vault with enough decisions to span many pages, then 8 KiB of garbage in its middle."""
    import os
    import sqlite3

    assert run_script("run_migration.py").returncode == 0
    path = home / "rows.json"
    path.write_text(json.dumps([{"decision": f"decision {n} " + "x" * 300} for n in range(rows)]))
    assert run_script("tools/decisions.py", "import", str(path)).returncode == 0
    db = home / "data" / "angles.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with open(db, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(8192))
    return db


def test_a_damaged_sqlite_file_is_critical_not_ok_and_every_command_says_so(run_script, home):
    _damaged_vault(run_script, home)
    done = run_script("backend_monitor.py", "--json", env={QUIET_CHECKS: "cpu,load,memory,disk,dashboard"})
    assert done.returncode == 5
    database = json.loads(done.stdout)["checks"]["database"]
    assert database["status"] == "critical" and "damaged" in database["reason"]
    for command in (["tools/decisions.py", "list"], ["memory_sync.py", "--export-only"], ["run_backup_now.py"]):
        failed = run_script(*command)
        assert failed.returncode == 2, command
        assert failed.stderr.strip().splitlines() == [failed.stderr.strip()], failed.stderr
        assert "is damaged" in failed.stderr and "restore_from_github.py" in failed.stderr


def test_a_broken_index_is_found_by_the_quick_check(settings, sqlite_storage):
    import sqlite3

    sqlite_storage.upsert_decisions(
        [
            {"decision": f"indexed decision {n} " + "y" * 200, "type": "other", "notion_page_id": f"p{n}"}
            for n in range(2000)
        ]
    )
    sqlite_storage.close()
    db = settings.sqlite_path
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE type='index' AND tbl_name='decision_vault' AND sql IS NOT NULL"
            " ORDER BY rootpage DESC LIMIT 1"
        ).fetchone()[0]
    with open(db, "r+b") as handle:
        handle.seek((root - 1) * page_size + 8)
        handle.write(b"\xff" * 64)
    result = DatabaseCheck().run(settings, _context(settings))
    assert result.status == CRITICAL and result.value == "damaged"


def _context(settings):
    from angles.health.base import Context

    return Context(settings)


def test_the_quick_check_runs_again_only_when_the_file_changed_or_an_hour_passed(settings, sqlite_storage, monkeypatch):
    from angles.storage.sqlite import SQLiteStorage

    calls = []
    real = SQLiteStorage.check_integrity

    def counted(self, budget_s=None):
        calls.append(budget_s)
        return real(self, budget_s)

    monkeypatch.setattr(SQLiteStorage, "check_integrity", counted)
    checks = [DatabaseCheck()]
    now = datetime.now(UTC)
    first = run_monitor(settings, checks=checks, now=now)
    assert first["checks"]["database"]["status"] == OK and len(calls) == 1
    run_monitor(settings, checks=checks, now=now + timedelta(minutes=5))
    assert len(calls) == 1, "an unchanged file is not read again"
    sqlite_storage.upsert_decisions([{"decision": "a change", "type": "other"}])
    run_monitor(settings, checks=checks, now=now + timedelta(minutes=10))
    assert len(calls) == 1, "an intact file that changed waits for the hour"
    run_monitor(settings, checks=checks, now=now + timedelta(minutes=70))
    assert len(calls) == 2


def test_a_zero_byte_database_is_refused_not_given_a_fresh_schema(run_script, home):
    (home / "data").mkdir()
    db = home / "data" / "angles.db"
    db.write_bytes(b"")
    for command in (["memory_sync.py", "--export-only"], ["tools/decisions.py", "list"], ["run_migration.py"]):
        done = run_script(*command)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]
        assert "empty file (0 bytes)" in done.stderr
        assert db.stat().st_size == 0
    assert not list((home / "export").glob("*.json")) if (home / "export").exists() else True
    monitor = run_script("backend_monitor.py", "--json", env={QUIET_CHECKS: "cpu,load,memory,disk,dashboard"})
    assert json.loads(monitor.stdout)["checks"]["database"]["status"] == "critical"


def test_a_quick_check_over_its_time_budget_is_left_for_later_not_reported_damaged(settings, sqlite_storage):
    from angles.health import database

    sqlite_storage.upsert_decisions([{"decision": f"decision {n} " + "z" * 200, "type": "other"} for n in range(3000)])
    with pytest.raises(TimeoutError):
        sqlite_storage.check_integrity(budget_s=0)
    hurried = dataclasses.replace(settings, health_timeout_seconds=0)
    result = database.DatabaseCheck().run(hurried, _context(hurried))
    assert result.status == OK and "skipped" in result.details["integrity"]
