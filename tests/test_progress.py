"""Progress bars where a person waits (a terminal on stderr), and nothing extra for --json, pipes, nohup or cron."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from tests.conftest import CONFIG_VARS, ROOT


def on_terminal(home, script: str, *args: str) -> tuple[int, str]:
    """Run a script with its stderr on a pseudo-terminal, as in an operator's shell; its exit code and stderr."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update(ANGLES_HOME=str(home), COLUMNS="120")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / script), *args],
            cwd=home,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            timeout=120,
        )
    finally:
        os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # Linux says EIO once the terminal has no writer left
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return done.returncode, seen.decode("utf-8", "replace")


def write_rows(home, count: int):
    path = home / "rows.json"
    rows = [{"decision": f"Decision {n} to keep", "type": "other", "date": "2025-01-01"} for n in range(count)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_import_export_backup_and_restore_show_rows_and_rate_on_a_terminal(home):
    path = write_rows(home, 2500)
    code, seen = on_terminal(home, "tools/decisions.py", "import", str(path))
    assert code == 0 and "import" in seen and "2500/2500" in seen and "rows/s" in seen
    code, seen = on_terminal(home, "memory_sync.py", "--export-only")
    assert code == 0 and "export" in seen and "2500/2500" in seen
    code, seen = on_terminal(home, "run_backup_now.py")
    assert code == 0 and "decisions" in seen and "2500/2500" in seen
    code, seen = on_terminal(home, "restore_from_github.py", "--dry-run")
    assert code == 0 and "compare" in seen and "rows/s" in seen


def test_migrations_show_their_count_on_a_terminal(home):
    code, seen = on_terminal(home, "run_migration.py")
    assert code == 0 and "migrate" in seen and "migrations/s" in seen


def test_json_output_and_a_stderr_that_is_no_terminal_get_no_progress_bar(home, run_script):
    path = write_rows(home, 1500)
    code, seen = on_terminal(home, "tools/decisions.py", "import", str(path), "--json")
    assert code == 0 and seen == ""
    piped = run_script("memory_sync.py", "--export-only")
    assert piped.returncode == 0 and piped.stderr == ""
    piped = run_script("run_backup_now.py")
    assert piped.returncode == 0 and piped.stderr == ""
