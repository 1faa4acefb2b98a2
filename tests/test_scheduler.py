"""scheduler.py as a daemon: failures recorded, no overlap, no delay, clean stop, one per host, UTC, catch-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from angles.engines.decision_model import parse_timestamp, to_iso
from tests.fakes.daemon import (
    ROOT,
    activity,
    log_text,
    script_env,
    start,
    start_script,
    state,
    stop,
    wait_for,
    write_jobs,
)

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2"


def _completed(rows, status="completed"):
    return [r for r in rows if r["status"] == status and r["action"] == "scheduled_run"]


def test_a_job_raising_every_time_never_stops_the_daemon_and_logs_its_traceback_once(home, settings):
    write_jobs(
        home,
        [
            {"name": "flaky", "call": "explode", "every_seconds": 0.05},
            {"name": "steady", "call": "quick", "every_seconds": 0.5},
        ],
    )
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json")
    try:
        wait_for(
            lambda: len(_completed(activity(settings, "flaky"), "failed")) >= 100,
            timeout=60,
            interval=0.5,
            what="100 recorded failures",
        )
        assert proc.poll() is None, "the daemon died"
        steady_before = len(_completed(activity(settings, "steady")))
        wait_for(lambda: len(_completed(activity(settings, "steady"))) > steady_before, what="steady to run again")
    finally:
        assert stop(proc) == 0
    failures = _completed(activity(settings, "flaky"), "failed")
    assert all("RuntimeError" in r["details"] and TOKEN not in r["details"] for r in failures)
    assert all("[REDACTED]" in r["details"] and r["duration_s"] is not None for r in failures)
    text = log_text(home)
    assert text.count("Traceback (most recent call last)") == 1
    # One line per failure, however many failures; only the first has the traceback too (three more lines:
    # the error, the source line that raised it, the exception).
    told = [line for line in text.splitlines() if "remote said no" in line]
    assert len(told) == text.count("flaky failed in") + 3
    assert text.count("flaky failed in") >= len(failures) >= 100
    assert TOKEN not in text and "[REDACTED]" in text
    assert state(home)["jobs"]["flaky"]["last_result"] == "failed"


def test_each_distinct_failure_of_a_job_shows_its_traceback_once(home, settings):
    write_jobs(home, [{"name": "fickle", "call": "explode_two_ways", "every_seconds": 0.05}])
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json")
    try:
        wait_for(lambda: len(_completed(activity(settings, "fickle"), "failed")) >= 20, what="20 recorded failures")
    finally:
        assert stop(proc) == 0
    text = log_text(home)
    assert text.count("Traceback (most recent call last)") == 2
    assert "ValueError" in text and "KeyError" in text


def test_run_now_with_an_empty_job_name_exits_1_and_starts_no_daemon(home, run_script):
    done = run_script("scheduler.py", "--run-now", "")
    assert done.returncode == 1
    assert "unknown job ''" in done.stderr
    assert not (home / "data" / "scheduler_state.json").exists()


def test_a_scheduler_whose_database_is_down_says_so_not_that_another_leads(home, free_port):
    write_jobs(home, [{"name": "steady", "call": "quick", "every_seconds": 60}], leader_retry_seconds=0.2)
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json", DATABASE_URL=f"postgresql://angles@127.0.0.1:{free_port}/x")
    try:
        wait_for(lambda: "standing by" in log_text(home), what="the standby line")
        time.sleep(1)
    finally:
        assert stop(proc) == 0
    text = log_text(home)
    assert "standing by: the database is unreachable" in text
    assert "another scheduler leads" not in text
    # Said when it starts (and hourly), not at every retry.
    assert text.count("standing by") == 1


def test_a_slow_job_never_delays_a_fast_one_and_never_overlaps_itself(home, settings):
    write_jobs(
        home,
        [
            {"name": "slowpoke", "call": "slow", "every_seconds": 0.5},
            {"name": "fast", "call": "quick", "every_seconds": 0.2},
        ],
    )
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json", SLOW_JOB_SECONDS="2.5")
    try:
        wait_for(lambda: len(_completed(activity(settings, "slowpoke"))) >= 2, timeout=30, what="two slow runs")
    finally:
        assert stop(proc) == 0
    slow_runs = sorted(
        (parse_timestamp(r["started_at"]), parse_timestamp(r["finished_at"]))
        for r in _completed(activity(settings, "slowpoke"))
    )
    for (_, end), (next_start, _) in zip(slow_runs, slow_runs[1:], strict=False):
        assert next_start >= end, "two runs of the same job overlapped"
    skipped = _completed(activity(settings, "slowpoke"), "skipped")
    assert skipped and all("previous run still going" in r["details"] for r in skipped)
    first_start, first_end = slow_runs[0]
    fast_runs = _completed(activity(settings, "fast"))
    fast_during = [r for r in fast_runs if first_start <= parse_timestamp(r["started_at"]) <= first_end]
    # 2.5 s of slow job at one fast run per 0.2 s (about 12): a blocked loop would start none while it runs.
    # A few suffice, so a loaded machine that is slow at recording each run does not fail the test.
    assert len(fast_during) >= 3
    assert "slowpoke skipped: its previous run is still going" in log_text(home)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_lets_short_jobs_finish_abandons_long_ones_and_exits_0_within_10s(home, settings, sig):
    write_jobs(
        home,
        [
            {"name": "finisher", "call": "slow", "every_seconds": 3600},
            {"name": "sleeper", "call": "mark", "every_seconds": 3600},
        ],
    )
    proc = start(
        home, SCHEDULER_JOBS_FILE="jobs.json", SLOW_JOB_SECONDS="1.5", MARK_FILE=str(home / "marks"), MARK_SECONDS="60"
    )
    wait_for(
        lambda: (home / "marks").exists() and state(home).get("jobs", {}).get("finisher", {}).get("running"),
        what="both jobs running",
    )
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0
    text = log_text(home)
    assert "sleeper abandoned" in text and "scheduler stopped cleanly" in text
    assert [r["status"] for r in activity(settings, "finisher")] == ["started", "completed"]
    sleeper = [(r["status"], r["details"]) for r in activity(settings, "sleeper")]
    assert sleeper[0][0] == "started" and sleeper[1:] == [("failed", "abandoned at shutdown after 8s")]
    from angles.locks import is_locked

    assert not is_locked(home / "data" / "scheduler.lock")
    final = state(home)
    assert final["stopped_at"] and not any(job["running"] for job in final["jobs"].values())


def test_a_second_scheduler_on_the_same_host_exits_1_and_says_who_holds_the_lock(home):
    write_jobs(home, [{"name": "steady", "call": "quick", "every_seconds": 60}])
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json")
    try:
        wait_for(lambda: state(home).get("pid") == proc.pid, what="the first daemon's state file")
        second = subprocess.run(
            [sys.executable, str(ROOT / "scheduler.py")],
            cwd=home,
            capture_output=True,
            text=True,
            env=script_env(home, SCHEDULER_JOBS_FILE="jobs.json"),
            timeout=30,
        )
    finally:
        assert stop(proc) == 0
    assert second.returncode == 1
    assert "already running" in second.stderr and f"pid {proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr


def test_the_schedule_is_in_utc_whatever_the_machine_time_zone(home):
    listings = {}
    for zone in ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati"):
        done = subprocess.run(
            [sys.executable, str(ROOT / "scheduler.py"), "--list", "--json"],
            cwd=home,
            env=script_env(home, TZ=zone),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        listings[zone] = {job["name"]: job for job in json.loads(done.stdout)["jobs"]}
    # A listing straddling a 5-minute boundary would differ only in health_check; compare the timed jobs.
    timed = ("backup", "restore_drill", "log_rotation", "cleanup", "memory_sync")
    reference = {name: listings["UTC"][name]["next_run"] for name in timed}
    for zone, jobs in listings.items():
        assert {name: jobs[name]["next_run"] for name in timed} == reference, zone
    assert reference["backup"].endswith("T02:00:00Z")
    assert reference["cleanup"].endswith("T04:00:00Z")
    assert parse_timestamp(reference["restore_drill"]).strftime("%A %H:%M") == "Sunday 03:00"
    assert listings["UTC"]["memory_sync"]["schedule"] == "Every 6 hours"


def test_startup_logs_the_schedule_and_the_state_file_shows_utc_next_runs(home):
    proc = start(home, TZ="America/New_York", BACKUP_TIME="02:30")
    try:
        running = wait_for(lambda: state(home).get("jobs"), what="the state file")
    finally:
        assert stop(proc) == 0
    text = log_text(home)
    for line in (
        "Every 6 hours: memory_sync",
        "Every 5 minutes: health_check",
        "Every day at 02:30 UTC: backup",
        "Every sunday at 03:00 UTC: restore_drill",
        "Every sunday at 00:05 UTC: log_rotation",
        "Every day at 04:00 UTC: cleanup",
    ):
        assert line in text
    jobs = running
    assert set(jobs) == {"health_check", "memory_sync", "backup", "restore_drill", "log_rotation", "cleanup"}
    assert jobs["backup"]["schedule"] == "Every day at 02:30 UTC"
    assert jobs["backup"]["next_run"].endswith("T02:30:00.000000Z")
    assert jobs["cleanup"]["next_run"].endswith("T04:00:00.000000Z")


def test_a_daily_job_missed_while_down_runs_once_at_startup_and_a_never_run_one_waits(home, settings, sqlite_storage):
    now = datetime.now(UTC)
    not_now = (now + timedelta(hours=6)).strftime("%H:%M")
    three_days_ago = to_iso(now - timedelta(days=3))
    sqlite_storage.record_activity(
        "nightly",
        "scheduled_run",
        "completed",
        "seeded",
        started_at=three_days_ago,
        finished_at=three_days_ago,
        duration_s=1.0,
    )
    write_jobs(
        home,
        [
            {"name": "nightly", "call": "quick", "at": not_now},
            {"name": "fresh_weekly", "call": "quick", "at": not_now, "day": "monday"},
        ],
    )
    for _ in range(2):
        proc = start(home, SCHEDULER_JOBS_FILE="jobs.json")
        try:
            wait_for(lambda: len(_completed(activity(settings, "nightly"))) >= 2, what="the catch-up run")
            time.sleep(1)
        finally:
            assert stop(proc) == 0
    nightly = _completed(activity(settings, "nightly"))
    assert len(nightly) == 2, "missed slots ran more than once (or again after a restart)"
    assert "catching up" in log_text(home)
    assert activity(settings, "fresh_weekly") == []


def test_run_now_runs_one_job_and_exits_with_its_exit_code(home, settings, run_script):
    write_jobs(
        home,
        [
            {"name": "steady", "call": "quick", "every_seconds": 60},
            {"name": "refused", "call": "auth_refused", "at": "02:00"},
            {"name": "raising", "call": "raise_auth_error", "at": "02:00"},
            {"name": "missing", "call": "angles.actions.nothing_here:run", "at": "02:00"},
        ],
    )
    env = {"SCHEDULER_JOBS_FILE": "jobs.json"}
    assert run_script("scheduler.py", "--run-now", "steady", env=env).returncode == 0
    assert run_script("scheduler.py", "--run-now", "refused", env=env).returncode == 4
    raising = run_script("scheduler.py", "--run-now", "raising", env=env)
    assert raising.returncode == 4 and "Traceback" not in raising.stderr
    missing = run_script("scheduler.py", "--run-now", "missing", env=env)
    assert missing.returncode == 1 and "not available" in missing.stderr
    unknown = run_script("scheduler.py", "--run-now", "nope", env=env)
    assert unknown.returncode == 1 and "unknown job 'nope'" in unknown.stderr
    runs = {r["agent_name"]: r for r in activity(settings) if r["action"] == "manual_run" and r["status"] != "started"}
    assert runs["steady"]["status"] == "completed" and runs["refused"]["status"] == "failed"
    assert runs["raising"]["details"].startswith("BackupAuthError")


def test_a_malformed_jobs_file_is_one_clear_line_and_exit_1(home, run_script):
    (home / "jobs.json").write_text(json.dumps({"jobs": [{"name": "x", "call": "a:b", "at": "25:00"}]}))
    done = run_script("scheduler.py", "--list", env={"SCHEDULER_JOBS_FILE": "jobs.json"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["error: SCHEDULER_JOBS_FILE: job x at='25:00' is not HH:MM (UTC)"]


def test_start_script_runs_scheduler_and_dashboard_and_ctrl_c_stops_both_cleanly(home):
    import re
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = start_script(home, port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: state(home).get("pid"), what="the scheduler to start")
        pid = state(home)["pid"]
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = proc.stdout.read()
    dashboards = [int(n) for n in re.findall(r"dashboard started \(pid (\d+)\)", output)]
    for stopped in [pid, *dashboards]:
        with pytest.raises(ProcessLookupError):
            os.kill(stopped, 0)
    assert "scheduler stopped cleanly" in log_text(home)


def test_a_first_start_shows_the_dashboard_up_and_the_export_only_sync_that_ran(home, free_port):
    proc = start_script(home, free_port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    snapshot = home / "logs" / "active" / "system_health.json"
    try:
        wait_for(snapshot.exists, timeout=60, what="the first health snapshot")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=15)
    checks = json.loads(snapshot.read_text())["checks"]
    assert checks["dashboard"]["status"] == "ok", checks["dashboard"]["reason"]
    assert checks["sync"]["reason"] == "1 of 1 memory syncs (export only, Notion off) succeeded in 24 h (100%)"


def test_a_jobs_lines_also_go_to_its_own_component_log(home, settings):
    write_jobs(
        home,
        [
            {"name": "memory_sync", "call": "quick", "every_seconds": 3600},
            {"name": "other", "call": "quick", "every_seconds": 3600},
        ],
    )
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json")
    try:
        wait_for(lambda: len(_completed(activity(settings))) >= 2, what="both jobs to run")
        # Read the log files once the lines are there, not once: under heavy load the files lag the rows.
        wait_for(lambda: "memory_sync completed" in log_text(home), what="the completion line")
        wait_for(lambda: "quick ran" in log_text(home, "memory_sync"), what="the job's own line")
    finally:
        assert stop(proc) == 0
    sync_log = log_text(home, "memory_sync")
    assert "memory_sync started" in sync_log and "quick ran" in sync_log
    assert "other started" not in sync_log
    assert "memory_sync completed" in log_text(home)


def test_run_now_refuses_a_job_the_daemon_is_running_right_now(home, run_script):
    write_jobs(home, [{"name": "slowpoke", "call": "slow", "every_seconds": 3600}])
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json", SLOW_JOB_SECONDS="5")
    try:
        wait_for(lambda: state(home).get("jobs", {}).get("slowpoke", {}).get("running"), what="the daemon's run")
        done = run_script("scheduler.py", "--run-now", "slowpoke", env={"SCHEDULER_JOBS_FILE": "jobs.json"})
    finally:
        assert stop(proc) == 0
    assert done.returncode == 1
    assert "slowpoke is running in the scheduler right now" in done.stderr


def test_a_daemon_killed_with_sigkill_leaves_no_lock_behind(home):
    write_jobs(home, [{"name": "steady", "call": "quick", "every_seconds": 60}])
    first = start(home, SCHEDULER_JOBS_FILE="jobs.json")
    wait_for(lambda: state(home).get("pid") == first.pid, what="the first daemon")
    first.kill()
    first.wait(10)
    second = start(home, SCHEDULER_JOBS_FILE="jobs.json", name="second")
    try:
        wait_for(lambda: state(home).get("pid") == second.pid, what="the restarted daemon")
    finally:
        assert stop(second) == 0
