"""verify_deployment.py: the checklist as PASS/WARN/FAIL with a fix hint per line."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fakes.daemon import start, state, stop, wait_for, write_jobs


class _Liveness(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's API
        code = 200 if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def dashboard():
    """A stand-in for tools/health_server.py's liveness route on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Liveness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def scheduler(home):
    write_jobs(home, [{"name": "steady", "call": "quick", "every_seconds": 60}])
    proc = start(home, SCHEDULER_JOBS_FILE="jobs.json")
    wait_for(lambda: state(home).get("pid") == proc.pid, what="the scheduler state file")
    yield proc
    assert stop(proc) == 0


def _by_check(result) -> dict:
    return {c["check"]: c for c in result["checks"]}


def test_embedded_default_with_scheduler_and_dashboard_passes_with_warnings_for_unconfigured_services(
    home, run_script, scheduler, dashboard
):
    env = {"HEALTH_PORT": str(dashboard), "SCHEDULER_JOBS_FILE": "jobs.json"}
    done = run_script("verify_deployment.py", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    checks = _by_check(result)
    assert result["summary"]["FAIL"] == 0
    warned = {name for name, c in checks.items() if c["status"] == "WARN"}
    assert {"production database", "Notion", "AI model", "backup remote"} <= warned
    assert all(c["hint"] for c in checks.values() if c["status"] != "PASS")
    for name in ("database", "scheduler", "dashboard", "secrets in logs", ".env permissions", "dependencies"):
        assert checks[name]["status"] == "PASS", checks[name]
    saved = json.loads((home / "logs" / "active" / "verification_results.json").read_text())
    assert saved["summary"] == result["summary"]
    table = run_script("verify_deployment.py", env=env).stdout
    assert "WARN  Notion" in table and "fix: set NOTION_TOKEN" in table


def test_nothing_running_fails_with_a_hint_to_start_it(home, run_script):
    run_script("run_migration.py")
    done = run_script("verify_deployment.py", "--json", env={"HEALTH_PORT": "1"})
    assert done.returncode == 1
    checks = _by_check(json.loads(done.stdout))
    assert checks["scheduler"]["status"] == "FAIL" and "deploy/start.sh" in checks["scheduler"]["hint"]
    assert checks["dashboard"]["status"] == "FAIL" and "health_server.py" in checks["dashboard"]["hint"]


def test_a_world_readable_env_file_is_a_warning_with_chmod_hint(home, run_script):
    env_file = home / ".env"
    env_file.write_text("LOG_LEVEL=INFO\n")
    env_file.chmod(0o644)
    checks = _by_check(json.loads(run_script("verify_deployment.py", "--json").stdout))
    assert checks[".env permissions"]["status"] == "WARN"
    assert checks[".env permissions"]["hint"] == "chmod 600 .env"
    env_file.chmod(0o600)
    checks = _by_check(json.loads(run_script("verify_deployment.py", "--json").stdout))
    assert checks[".env permissions"]["status"] == "PASS"


def test_a_secret_in_a_log_fails_the_check_without_repeating_the_secret(home, run_script):
    secret = "configured-notion-secret-value"
    logs = home / "logs" / "active"
    logs.mkdir(parents=True)
    (logs / "legacy.log").write_text("ok line\nAuthorization: Bearer " + secret + "\n")
    done = run_script(
        "verify_deployment.py", "--json", env={"NOTION_TOKEN": secret, "NOTION_BASE_URL": "http://127.0.0.1:1"}
    )
    checks = _by_check(json.loads(done.stdout))
    assert checks["secrets in logs"]["status"] == "FAIL"
    assert "legacy.log:2" in checks["secrets in logs"]["detail"]
    assert secret not in done.stdout
    assert secret not in (logs / "verification_results.json").read_text()
    assert done.returncode == 1


# Everything but External ID, and Type with the wrong type.
PARTIAL_SCHEMA = {
    "Decision": "rich_text",
    "Type": "rich_text",
    "Priority": "select",
    "Date": "date",
    "Active": "checkbox",
    "Tags": "multi_select",
    "Comment": "rich_text",
    "AI summary": "rich_text",
}


@pytest.fixture
def openai_api():
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI(key="sk-test-" + "y" * 30) as api:
        yield api


def test_configured_services_are_checked_for_auth_properties_and_model(home, run_script, notion_api, openai_api):
    subprocess.run(["git", "init", "-q", "--bare", str(home / "data" / "backup-remote.git")], check=True)
    env = {
        "NOTION_TOKEN": notion_api.token,
        "NOTION_DATABASE_ID": notion_api.add_database(PARTIAL_SCHEMA),
        "NOTION_BASE_URL": notion_api.base_url,
        "OPENAI_API_KEY": openai_api.key,
        "OPENAI_BASE_URL": openai_api.base_url,
    }
    checks = _by_check(json.loads(run_script("verify_deployment.py", "--json", env=env).stdout))
    assert checks["Notion"]["status"] == "PASS"
    database = checks["Notion database"]
    assert database["status"] == "WARN" and database["hint"] == "python memory_sync.py --setup-notion"
    assert "External ID" in database["detail"] and "Type is rich_text, not select" in database["detail"]
    assert checks["AI model"]["status"] == "PASS" and "gpt-5" in checks["AI model"]["detail"]
    assert checks["backup remote auth"]["status"] == "PASS"
    wrong = {**env, "NOTION_TOKEN": "ntn_" + "z" * 30, "OPENAI_MODEL": "gpt-nope"}
    done = run_script("verify_deployment.py", "--json", env=wrong)
    checks = _by_check(json.loads(done.stdout))
    assert checks["Notion"]["status"] == "FAIL" and checks["Notion"]["hint"] == "check NOTION_TOKEN"
    assert checks["AI model"]["status"] == "FAIL" and "gpt-nope" in checks["AI model"]["detail"]
    assert checks["AI model"]["hint"] == "check OPENAI_MODEL"
    assert "z" * 30 not in done.stdout and openai_api.key not in done.stdout
    assert done.returncode == 1


def test_a_backup_remote_refusing_the_token_fails_without_showing_it(home, run_script):
    from tests.fakes.git_http import GitHTTPServer

    root = home.parent / "srv"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "backup.git")], check=True)
    wrong = "ghp_" + "W" * 36
    with GitHTTPServer(root, "angles-bot", "ghp_" + "R" * 36) as server:
        env = {"BACKUP_REMOTE": f"{server.url}/backup.git", "GITHUB_TOKEN": wrong, "GIT_USERNAME": "angles-bot"}
        done = run_script("verify_deployment.py", "--json", env=env)
        unreachable = run_script(
            "verify_deployment.py", "--json", env={**env, "BACKUP_REMOTE": str(home / "nowhere.git")}
        )
    line = _by_check(json.loads(done.stdout))["backup remote auth"]
    assert line["status"] == "FAIL" and line["detail"].startswith("credentials refused")
    assert "GITHUB_TOKEN" in line["hint"]
    assert wrong not in done.stdout + done.stderr
    line = _by_check(json.loads(unreachable.stdout))["backup remote auth"]
    assert line["status"] == "FAIL" and line["detail"].startswith("unreachable")


@pytest.mark.parametrize(("stale_seconds", "verdict", "status"), [("600", "PASS", "ok"), ("180", "FAIL", "critical")])
def test_the_checklist_and_the_monitor_judge_a_heartbeat_by_the_same_limit(home, stale_seconds, verdict, status):
    import os
    from datetime import UTC, datetime, timedelta

    from angles.actions.monitor import run_monitor
    from angles.actions.verify import run_verify_deployment
    from angles.config import load_settings
    from angles.engines.decision_model import to_iso
    from angles.health.scheduler import SchedulerCheck

    settings = load_settings({"ANGLES_HOME": str(home), "SCHEDULER_STALE_SECONDS": stale_seconds}, dotenv=False)
    settings.data_dir.mkdir(parents=True)
    now = datetime.now(UTC)
    state = {"pid": os.getpid(), "started_at": to_iso(now - timedelta(hours=1)), "tick_seconds": 1}
    state["last_tick"] = to_iso(now - timedelta(seconds=300))
    (settings.data_dir / "scheduler_state.json").write_text(json.dumps(state))
    checklist = run_verify_deployment(settings, checks=[("scheduler", SchedulerCheck())])
    monitor = run_monitor(settings, checks=[SchedulerCheck()])
    assert checklist["checks"][0]["status"] == verdict
    assert monitor["checks"]["scheduler"]["status"] == status
