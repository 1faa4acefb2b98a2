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
