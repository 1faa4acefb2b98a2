"""Configuration: defaults, aliases, precedence and one clear line for a malformed value."""

import pytest

from angles.config import load_settings


def test_no_configuration_means_the_embedded_default(home):
    s = load_settings()
    assert s.database_kind == "sqlite"
    assert s.sqlite_path == home / "data" / "angles.db"
    assert not s.notion_enabled and not s.ai_enabled
    assert s.openai_model == "gpt-5"
    assert (s.health_host, s.health_port) == ("127.0.0.1", 5000)
    assert s.backup_remote_url == str(home / "data" / "backup-remote.git")


def test_real_environment_wins_over_dotenv(home, clean_env):
    (home / ".env").write_text("HEALTH_PORT=6000\nNOTION_DATABASE_ID=from-file\n")
    clean_env.setenv("HEALTH_PORT", "7000")
    s = load_settings()
    assert s.health_port == 7000
    assert s.notion_database_id == "from-file"


@pytest.mark.parametrize(
    "name,value",
    [("NOTION_API_KEY", "ntn_alias"), ("NOTION_TOKEN", "ntn_primary")],
)
def test_notion_token_alias(home, clean_env, name, value):
    clean_env.setenv(name, value)
    assert load_settings().notion_token == value


@pytest.mark.parametrize(
    "key_var", ["SUPABASE_KEY", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SERVICE_KEY", "SUPABASE_ANON_KEY"]
)
def test_supabase_rest_chosen_when_no_database_url(home, clean_env, key_var):
    clean_env.setenv("SUPABASE_URL", "https://abc.supabase.co")
    clean_env.setenv(key_var, "k" * 20)
    s = load_settings()
    assert s.database_kind == "supabase" and s.supabase_key == "k" * 20
    clean_env.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:5432/db")
    assert load_settings().database_kind == "postgres"


def test_github_repo_alias_becomes_https_remote(home, clean_env):
    clean_env.setenv("GITHUB_REPO", "acme/vault-backup")
    assert load_settings().backup_remote_url == "https://github.com/acme/vault-backup.git"


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("HEALTH_PORT", "abc", "HEALTH_PORT"),
        ("HEALTH_PORT", "70000", "HEALTH_PORT"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("NOTION_RPS", "fast", "NOTION_RPS"),
        ("BACKUP_TIME", "25:00", "BACKUP_TIME"),
        ("OPENAI_BASE_URL", "localhost:8080", "OPENAI_BASE_URL"),
        ("GITHUB_REPO", "not a repo", "GITHUB_REPO"),
        ("CPU_CRITICAL", "50", "CPU_CRITICAL"),
        ("DATABASE_URL", "postgresql://u:p@[::1/db", "DATABASE_URL"),
        ("SUPABASE_URL", "https://[abc.supabase.co", "SUPABASE_URL"),
        ("NOTION_BASE_URL", "http://[notion", "NOTION_BASE_URL"),
        ("NOTION_BASE_URL", "http://notion:port", "NOTION_BASE_URL"),
        ("SYNC_INTERVAL_HOURS", "inf", "SYNC_INTERVAL_HOURS"),
        ("SYNC_INTERVAL_HOURS", "1e300", "SYNC_INTERVAL_HOURS"),
        ("HEALTH_INTERVAL_MINUTES", "inf", "HEALTH_INTERVAL_MINUTES"),
        ("HEALTH_INTERVAL_MINUTES", "nan", "HEALTH_INTERVAL_MINUTES"),
        ("HEALTH_TIMEOUT_SECONDS", "1e300", "HEALTH_TIMEOUT_SECONDS"),
        ("BATCH_SIZE", "9" * 40, "BATCH_SIZE"),
        ("MCP_TOKEN_CACHE_SECONDS", "61", "MCP_TOKEN_CACHE_SECONDS"),
        ("MCP_TOKEN_CACHE_SECONDS", "-1", "MCP_TOKEN_CACHE_SECONDS"),
    ],
)
def test_malformed_value_is_one_clear_line_and_exit_1(run_script, name, value, fragment):
    result = run_script("run_migration.py", env={name: value})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


@pytest.mark.parametrize(
    "script,args",
    [
        ("run_migration.py", ["--bogus"]),
        ("memory_sync.py", ["--no-such-flag"]),
        ("tools/decisions.py", ["add"]),
    ],
)
def test_bad_arguments_are_one_line_and_exit_1(run_script, script, args):
    result = run_script(script, *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")


@pytest.mark.parametrize("script", ["scheduler.py", "backend_monitor.py"])
@pytest.mark.parametrize(
    "name,value",
    [("SYNC_INTERVAL_HOURS", "inf"), ("HEALTH_INTERVAL_MINUTES", "inf"), ("HEALTH_TIMEOUT_SECONDS", "1e300")],
)
def test_an_endless_interval_or_timeout_is_refused_before_any_job_runs(run_script, home, script, name, value):
    result = run_script(script, "--list" if script == "scheduler.py" else "--quiet", env={name: value})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and name in result.stderr
    assert not (home / "logs" / "active" / "system_health.json").exists()


def _api_key() -> str:
    # Built at run time so no token-shaped literal is committed.
    return "sk-proj-" + "".join("abcdefghijKLMNOPQRST0123456789"[i % 30] for i in range(40))


@pytest.mark.parametrize("script", ["run_migration.py", "scheduler.py", "tools/health_server.py"])
def test_a_key_pasted_into_the_wrong_setting_is_never_echoed(run_script, script):
    key = _api_key()
    plain = "a-plain-configured-token-value"
    short = "hunter2hunter"
    for env in (
        {"HEALTH_PORT": key},
        {"NOTION_TOKEN": plain, "HEALTH_PORT": plain},
        {"BACKUP_TIME": plain},
        {"OPENAI_API_KEY": short, "LOG_LEVEL": short},
        {"GITHUB_TOKEN": short, "RESTORE_DRILL_DAY": short},
    ):
        result = run_script(script, env=env, timeout=30)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        for secret in (key, plain, short):
            assert secret.lower() not in result.stderr.lower()
        assert list(env)[-1] in result.stderr


def test_a_secret_in_a_bad_argument_is_redacted(run_script):
    key = _api_key()
    result = run_script("tools/health_server.py", "--port", key)
    assert result.returncode == 1 and key not in result.stderr and "--port" in result.stderr


def test_an_angles_home_that_cannot_be_created_is_one_line_naming_it(run_script, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for home in (blocker / "home", blocker, "/proc/angles-home"):
        result = run_script("run_migration.py", env={"ANGLES_HOME": str(home)}, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert "ANGLES_HOME" in result.stderr and "Traceback" not in result.stderr
