"""Shared fixtures: an isolated ANGLES_HOME per test, fresh PostgreSQL databases, script runners."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("ANGLES_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# Every variable the configuration reads (all listed in .env.example, plus the aliases), cleared so a
# developer's environment never leaks into a test.
CONFIG_VARS = sorted(
    {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    | {
        "NOTION_API_KEY",
        "SUPABASE_SERVICE_ROLE_KEY",
        "SUPABASE_SERVICE_KEY",
        "SUPABASE_ANON_KEY",
        "REPO_URL",
        "GITHUB_REPO",
        "ANGLES_HOME",
    }
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def home(tmp_path, clean_env) -> Path:
    """An empty ANGLES_HOME: data/, logs/ and export/ live here for this test only."""
    clean_env.setenv("ANGLES_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def settings(home):
    from angles.config import load_settings

    return load_settings()


@pytest.fixture
def sqlite_storage(settings):
    from angles.storage import migrations, open_storage

    storage = open_storage(settings)
    migrations.migrate(storage)
    yield storage
    storage.close()


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def notion_api():
    """A local Notion API (tests/fakes/notion_server.py) at Notion's own rate limit."""
    from tests.fakes.notion_server import FakeNotion

    api = FakeNotion()
    api.start()
    yield api
    api.stop()


def _pg_admin():
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True)


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"angles_t_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def run_script(home):
    """Run a top-level script as an operator would, in ANGLES_HOME, returning the completed process."""

    def run(script: str, *args: str, env: dict | None = None, timeout: float = 120, **kwargs):
        full_env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
        full_env["ANGLES_HOME"] = str(home)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, str(ROOT / script), *args],
            cwd=kwargs.pop("cwd", home),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    return run
