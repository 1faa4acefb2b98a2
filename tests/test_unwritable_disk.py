"""An unwritable logs/ folder or a full disk: commands still work, say so in one line, leave no temporary file."""

from __future__ import annotations

import errno
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CONFIG_VARS

ROOT = Path(__file__).resolve().parent.parent
TOOL = "tools/decisions.py"


def log_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "cannot write the log file" in line]


@pytest.fixture
def migrated(run_script, home):
    assert run_script("run_migration.py").returncode == 0
    return home


def test_an_unwritable_log_file_never_fails_a_command_or_doubles_a_decision(run_script, migrated):
    log = migrated / "logs" / "active" / "decisions.log"
    log.unlink(missing_ok=True)
    # A directory where the log file should be: open() fails as it does on a root-owned file after `sudo`.
    log.mkdir(parents=True)
    added = run_script(TOOL, "add", "Keep the vault writable")
    assert added.returncode == 0, added.stderr
    assert "added" in added.stdout
    assert "Traceback" not in added.stderr and "Logging error" not in added.stderr
    assert len(log_warnings(added.stderr)) == 1
    listed = run_script(TOOL, "list", "--json")
    assert listed.returncode == 0
    assert json.loads(listed.stdout)["count"] == 1


@pytest.mark.parametrize(
    "script,args,code",
    [
        (TOOL, ["add", "Still stored"], 0),
        ("run_migration.py", [], 0),
        ("scheduler.py", ["--run-now", "cleanup"], 0),
        ("run_backup_now.py", [], 0),
        # The monitor's snapshot and the checklist's folder check live there: they report it, exit as documented.
        ("backend_monitor.py", ["--quiet"], None),
        ("verify_deployment.py", [], 1),
    ],
)
def test_a_logs_folder_that_cannot_be_created_costs_one_warning_line(run_script, migrated, script, args, code):
    active = migrated / "logs" / "active"
    for path in active.iterdir():
        path.unlink()
    active.rmdir()
    active.write_text("")
    done = run_script(script, *args)
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    assert len(log_warnings(done.stderr)) == 1, done.stderr
    if code is not None:
        assert done.returncode == code, done.stderr


def test_a_full_disk_under_the_log_costs_one_line_not_a_traceback_per_record(run_script, migrated):
    log = migrated / "logs" / "active" / "decisions.log"
    log.unlink(missing_ok=True)
    log.symlink_to("/dev/full")  # every write fails with ENOSPC
    path = migrated / "many.json"
    path.write_text(json.dumps([{"decision": f"row {n}", "type": "banana"} for n in range(30)]))
    done = run_script(TOOL, "import", str(path))
    assert done.returncode == 1
    assert "Logging error" not in done.stderr and "Traceback" not in done.stderr
    warnings = log_warnings(done.stderr)
    assert len(warnings) == 1 and "No space left on device" in warnings[0]


def test_the_dashboard_starts_when_its_log_cannot_be_written(home):
    active = home / "logs" / "active"
    active.parent.mkdir(parents=True)
    active.write_text("")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env["ANGLES_HOME"] = str(home)
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "health_server.py"), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and status is None:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/healthz")
                status = connection.getresponse().status
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.1)
        assert status == 200, server.stderr.read() if server.poll() is not None else "no answer"
    finally:
        server.terminate()
        server.wait(timeout=10)
    stderr = server.stderr.read()
    assert "Traceback" not in stderr and len(log_warnings(stderr)) == 1


class _FullDisk:
    """A file whose writes fail the way a full disk's do, after the first few bytes."""

    def __init__(self, handle):
        self.handle = handle
        self.written = 0

    def write(self, data):
        if self.written + len(data) > 100:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_backup_on_a_full_disk_fails_in_one_line_and_leaves_no_temporary_file(home, monkeypatch):
    from angles.actions.backup import run_backup
    from angles.config import load_settings
    from angles.engines import backup_format
    from angles.errors import AnglesError
    from angles.storage import migrations, open_storage

    settings = load_settings()
    with open_storage(settings) as storage:
        migrations.migrate(storage)
        storage.upsert_decisions([{"decision": f"decision {n} " * 20, "type": "other"} for n in range(20)])
    run_backup(settings)

    def full_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)  # noqa: SIM115 - closed by the wrapper
        return _FullDisk(handle) if "w" in mode else handle

    with open_storage(settings) as storage:
        storage.upsert_decisions([{"decision": "one more, on a full disk", "type": "other"}])
    monkeypatch.setattr(backup_format, "open", full_open, raising=False)
    with pytest.raises(AnglesError) as failure:
        run_backup(settings)
    assert "No space left on device" in str(failure.value) and "\n" not in str(failure.value)
    clone = settings.data_dir / "backup-repo"
    assert not [p.name for p in clone.iterdir() if p.name.endswith(".tmp")]
    history = (settings.logs_dir / "backup.log").read_text().splitlines()
    assert "backup failed" in history[-1]
