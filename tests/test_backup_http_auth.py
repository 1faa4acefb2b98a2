"""A backup remote over HTTP with Basic auth: the token travels only in git's environment, and a refusal exits 4."""

from __future__ import annotations

import base64
import subprocess

import pytest

from tests.fakes.git_http import GitHTTPServer

USER = "angles-bot"


def _token(prefix: str = "ghp_") -> str:
    # Built at run time so no token-shaped literal is committed.
    return prefix + "".join("QRSTabcdefghij0123456789KLMNOP"[(i * 11) % 30] for i in range(36))


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "backup.git")], check=True)
    subprocess.run(["git", "config", "http.receivepack", "true"], cwd=root / "backup.git", check=True)
    with GitHTTPServer(root, USER, _token()) as srv:
        yield srv


def _seed(home):
    from angles.config import load_settings
    from angles.engines.decision_model import validate
    from angles.storage import migrations, open_storage

    settings = load_settings({"ANGLES_HOME": str(home)}, dotenv=False)
    with open_storage(settings) as storage:
        migrations.migrate(storage)
        storage.upsert_decisions([validate({"decision": "Use HTTPS remotes", "type": "technical"})])


def _everything_written(home) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_rejected_credentials_exit_4_and_the_token_is_nowhere(home, run_script, server):
    wrong = _token("ghp_Wrong")
    _seed(home)
    env = {
        "BACKUP_REMOTE": f"{server.url}/backup.git",
        "GITHUB_TOKEN": wrong,
        "GIT_USERNAME": USER,
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }

    done = run_script("run_backup_now.py", env=env)

    assert done.returncode == 4
    assert "rejected the credentials" in done.stderr and "Traceback" not in done.stderr
    sent = base64.b64encode(f"{USER}:{wrong}".encode()).decode()
    assert f"Basic {sent}" in server.authorizations
    assert wrong not in done.stdout + done.stderr
    assert wrong.encode() not in _everything_written(home)
    assert "backup failed (exit 4)" in (home / "logs" / "backup.log").read_text()


def test_no_token_for_a_protected_remote_exits_4_without_prompting(home, run_script, server):
    _seed(home)
    env = {"BACKUP_REMOTE": f"{server.url}/backup.git", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    done = run_script("run_backup_now.py", env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 4
    assert "set GITHUB_TOKEN" in done.stderr


def test_the_token_reaches_git_through_the_environment_only(home, run_script, server):
    token = _token()
    _seed(home)
    env = {
        "BACKUP_REMOTE": f"{server.url}/backup.git",
        "GITHUB_TOKEN": token,
        "GIT_USERNAME": USER,
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }

    done = run_script("run_backup_now.py", env=env)
    restore = run_script("restore_from_github.py", "--dry-run", env=env)

    assert done.returncode == 0, done.stderr
    assert restore.returncode == 0, restore.stderr
    assert server.expected in server.authorizations
    config = (home / "data" / "backup-repo" / ".git" / "config").read_text()
    assert f"{server.url}/backup.git" in config
    assert token not in config and USER not in config
    assert token.encode() not in _everything_written(home)
    log = subprocess.run(["git", "log", "--format=%s"], cwd=server.root / "backup.git", capture_output=True, text=True)
    assert "1 decisions (+1 ~0 -0)" in log.stdout


def test_credentials_in_the_remote_url_are_moved_out_of_it(home, run_script, server):
    token = _token()
    _seed(home)
    host = server.url.removeprefix("http://")
    env = {
        "BACKUP_REMOTE": f"http://{USER}:{token}@{host}/backup.git",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }

    done = run_script("run_backup_now.py", env=env)

    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    assert token.encode() not in _everything_written(home)
    assert server.expected in server.authorizations
