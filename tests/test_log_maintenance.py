"""Log rotation without restarts, and the cleanup job's retention and size bounds."""

from __future__ import annotations

import gzip
import os
import re
import time

from tests.fakes.daemon import activity, log_text, start, state, stop, wait_for, write_jobs

DAY = 86400


def _age(path, days: float) -> None:
    old = time.time() - days * DAY
    os.utime(path, (old, old))


def test_rotation_while_the_daemon_writes_loses_no_log_line(home, settings):
    lines = 3000
    write_jobs(
        home,
        [
            {"name": "chatter", "call": "chatter", "every_seconds": 3600},
            {"name": "log_rotation", "call": "angles.actions.maintenance:run_rotate_logs", "every_seconds": 0.25},
        ],
    )
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json", CHATTER_LINES=str(lines))
    try:
        wait_for(
            lambda: state(home).get("jobs", {}).get("chatter", {}).get("last_result") == "completed",
            timeout=60,
            what="the chatter job to finish",
        )
    finally:
        assert stop(proc) == 0
    archived = sorted((home / "logs" / "archive").rglob("scheduler*.log"))
    assert len(archived) >= 3, "rotation did not happen repeatedly while the job was writing"
    pieces = [p.read_text() for p in archived] + [log_text(home)]
    # The writer followed each new file: chatter lines are spread over several of them, not stuck in the first.
    assert sum(1 for piece in pieces if "chatter line" in piece) >= 3
    text = "".join(pieces)
    numbers = re.findall(r"chatter line (\d{6})", text)
    assert sorted(int(n) for n in numbers) == list(range(lines))
    rotations = [r for r in activity(settings, "log_rotation") if r["status"] == "completed"]
    assert len(rotations) >= 3
    assert "scheduler stopped cleanly" in log_text(home)


def test_rotation_moves_active_logs_into_a_dated_archive_and_keeps_earlier_ones(settings):
    from angles.actions.maintenance import run_rotate_logs

    active = settings.active_logs_dir
    active.mkdir(parents=True, exist_ok=True)
    (active / "scheduler.log").write_text("first\n")
    (active / "system_health.json").write_text("{}")
    first = run_rotate_logs(settings)
    (active / "scheduler.log").write_text("second\n")
    run_rotate_logs(settings)
    folder = settings.logs_dir / "archive" / time.strftime("%Y-%m-%d", time.gmtime())
    assert first["rotated"][0]["file"] == "scheduler.log"
    assert (folder / "scheduler.log").read_text() == "first\n"
    assert (folder / "scheduler.2.log").read_text() == "second\n"
    assert (active / "system_health.json").exists() and not (active / "scheduler.log").exists()


def test_cleanup_deletes_old_exports_but_the_newest_and_gzips_old_archived_logs(settings):
    from angles.actions.maintenance import run_cleanup

    exports = settings.export_dir
    exports.mkdir(parents=True)
    for name, days in (("decisions_old.json", 45), ("decisions_older.json", 60), ("decisions_new.json", 2)):
        (exports / name).write_text("[]")
        _age(exports / name, days)
    archive = settings.logs_dir / "archive" / "2026-01-01"
    archive.mkdir(parents=True)
    (archive / "scheduler.log").write_text("old line\n")
    _age(archive / "scheduler.log", 20)
    (archive / "recent.log").write_text("recent line\n")
    _age(archive / "recent.log", 3)
    result = run_cleanup(settings)
    assert sorted(p.name for p in exports.iterdir()) == ["decisions_new.json"]
    assert sorted(result["exports_deleted"]) == ["decisions_old.json", "decisions_older.json"]
    with gzip.open(archive / "scheduler.log.gz", "rt") as f:
        assert f.read() == "old line\n"
    assert not (archive / "scheduler.log").exists() and (archive / "recent.log").exists()


def test_cleanup_keeps_the_newest_export_even_when_it_is_old(settings):
    from angles.actions.maintenance import run_cleanup

    settings.export_dir.mkdir(parents=True)
    only = settings.export_dir / "decisions.json"
    only.write_text("[]")
    _age(only, 90)
    run_cleanup(settings)
    assert only.exists()


def test_cleanup_keeps_the_archive_under_its_size_bound_and_rotates_oversized_logs(home, clean_env):
    from angles.actions.maintenance import run_cleanup
    from angles.config import load_settings

    clean_env.setenv("LOG_ARCHIVE_MAX_MB", "1")
    clean_env.setenv("LOG_MAX_MB", "0.5")
    settings = load_settings()
    archive = settings.logs_dir / "archive"
    for n, days in enumerate((9, 8, 7)):
        folder = archive / f"2026-01-0{n + 1}"
        folder.mkdir(parents=True)
        (folder / "sync.log").write_bytes(os.urandom(400 * 1024))
        _age(folder / "sync.log", days)
    settings.active_logs_dir.mkdir(parents=True)
    (settings.active_logs_dir / "chatty.log").write_bytes(b"x" * 600 * 1024)
    (settings.active_logs_dir / "quiet.log").write_bytes(b"y" * 10)
    result = run_cleanup(settings)
    assert result["oversized_rotated"] == ["chatty.log"]
    assert (settings.active_logs_dir / "quiet.log").exists()
    total = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file())
    assert total <= 1024 * 1024
    assert result["archives_pruned"][0] == "2026-01-01/sync.log"
    assert not (archive / "2026-01-01").exists()


def test_cleanup_forgets_slot_claims_older_than_a_week_and_keeps_recent_ones(settings, sqlite_storage):
    from datetime import UTC, datetime, timedelta

    from angles.actions.maintenance import run_cleanup
    from angles.engines.decision_model import to_iso

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    old, recent = to_iso(now - timedelta(days=8)), to_iso(now - timedelta(days=1))
    assert sqlite_storage.claim_slot("health_check", old, "host")
    assert sqlite_storage.claim_slot("health_check", recent, "host")
    assert run_cleanup(settings)["slots_pruned"] == 1
    assert sqlite_storage.claim_slot("health_check", recent, "other-host") is False


def test_backup_history_is_rotated_and_tail_still_finds_it(home, clean_env):
    import subprocess

    from angles.actions.backup import append_history
    from angles.actions.maintenance import run_cleanup, run_rotate_logs
    from angles.config import load_settings

    clean_env.setenv("LOG_MAX_MB", "0.01")
    settings = load_settings()

    for n in range(3):
        append_history(settings, f"backup completed: run {n}")
    history = settings.logs_dir / "backup.log"

    run_rotate_logs(settings)

    folder = settings.logs_dir / "archive" / time.strftime("%Y-%m-%d", time.gmtime())
    archived = (folder / "backup-history.log").read_text()
    assert [line.split(" ", 1)[1] for line in archived.splitlines()] == [f"backup completed: run {n}" for n in range(3)]
    append_history(settings, "backup completed: run 3")
    tail = subprocess.run(["tail", "-n", "5", str(history)], capture_output=True, text=True, check=True).stdout
    assert f"history before this line: logs/archive/{folder.name}/backup-history.log" in tail
    assert tail.rstrip().endswith("backup completed: run 3")
    assert not (settings.active_logs_dir / "backup-history.log").exists()

    # The daily cleanup rotates it too once it outgrows LOG_MAX_MB; a history of only the pointer line stays.
    history.write_text("x" * (int(settings.log_max_mb * 1024 * 1024) + 1))
    assert "backup.log" in run_cleanup(settings)["oversized_rotated"]
    assert (folder / "backup-history.2.log").exists()
    assert run_rotate_logs(settings)["rotated"] == []
    assert history.read_text().count("\n") == 1
