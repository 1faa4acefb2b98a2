"""Logs never contain a configured secret or a well-known token shape."""

import logging

from angles.config import load_settings
from angles.logs import setup_logging


def _fake(prefix: str, n: int = 36) -> str:
    # Built at run time so no token-shaped literal is committed.
    return prefix + "".join("abcdefghijKLMNOPQRST0123456789"[i % 30] for i in range(n))


def test_configured_secrets_and_token_shapes_are_redacted_everywhere(home, clean_env):
    notion = "plain-configured-notion-value-123"
    clean_env.setenv("NOTION_TOKEN", notion)
    clean_env.setenv("DATABASE_URL", "postgresql://vault:hunter2hunter2@127.0.0.1:5432/db")
    settings = load_settings()
    log = setup_logging("redaction", settings, console=False)
    shapes = [
        _fake("sk-proj-"),
        _fake("ghp_"),
        _fake("github_pat_"),
        _fake("secret_", 44),
        _fake("ntn_"),
        _fake("sb_secret_"),
        "eyJ" + _fake("h", 20) + ".eyJ" + _fake("p", 30) + "." + _fake("s", 30),
    ]
    log.info("token %s used", notion)
    log.warning("connecting to %s", settings.database_url)
    for shape in shapes:
        log.info("saw %s in a payload", shape)
    try:
        raise RuntimeError(f"request failed with Authorization: Bearer {notion} and {shapes[0]}")
    except RuntimeError:
        log.exception("sync failed")
    logging.shutdown()
    text = (home / "logs" / "active" / "redaction.log").read_text()
    assert "sync failed" in text and "RuntimeError" in text
    assert notion not in text
    assert "hunter2hunter2" not in text
    for shape in shapes:
        assert shape not in text
    assert text.count("[REDACTED]") >= len(shapes) + 3


def test_log_lines_are_one_line_with_utc_timestamps(home):
    settings = load_settings()
    log = setup_logging("format", settings, console=False)
    log.info("sync completed duration 1.2s")
    logging.shutdown()
    line = (home / "logs" / "active" / "format.log").read_text().strip()
    assert line.count("\n") == 0
    stamp = line.split(" ", 1)[0]
    assert stamp.endswith("Z") and stamp[4] == "-" and "T" in stamp
    assert "INFO" in line and "completed" in line


def test_logs_keep_ordinary_words_and_short_configured_values_but_hide_url_passwords(home, clean_env):
    clean_env.setenv("DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/vault")
    settings = load_settings()
    log = setup_logging("words", settings, console=False)
    words = "postgres runs disk-encryption-at-rest, task-management-system-v2 and risk-assessment-spreadsheet"
    log.info("decision text: %s", words)
    log.info("connecting to %s", settings.database_url)
    logging.shutdown()
    text = (home / "logs" / "active" / "words.log").read_text()
    assert f"decision text: {words}" in text
    assert "postgresql://[REDACTED]@127.0.0.1:5432/vault" in text
