"""Bearer tokens of the assistants' HTTP door: kept only as a hash, revocable, write-limited, on every backend;
and `tools/decisions.py token create|list|revoke` as an operator runs it."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from angles.assistants import tokens
from tests.test_storage_behaviour import BACKENDS, open_backend


@pytest.fixture(params=BACKENDS)
def storage(request):
    return open_backend(request.param, request)


def stored_values(storage) -> list:
    """Every value in the token table, however the backend holds it."""
    if storage.kind == "supabase":
        return [v for row in storage.fake.rows("mcp_tokens") for v in row.values()]
    with storage._guard() as conn:
        rows = conn.execute("SELECT * FROM mcp_tokens").fetchall()
    return [v for row in rows for v in (row.values() if isinstance(row, dict) else tuple(row))]


def test_a_token_is_kept_only_as_its_hash_and_recognised_by_its_secret(storage):
    made = tokens.create(storage, "claude", "write")
    assert made["token"].startswith(tokens.PREFIX) and made["token"] not in map(str, stored_values(storage))
    found = tokens.authenticate(storage, made["token"])
    assert (found["name"], found["scope"], found["revoked_at"]) == ("claude", "write", None)
    # The same token with its last character changed (whatever that character is) is a wrong token.
    wrong_last = "1" if made["token"][-1] == "0" else "0"
    assert tokens.authenticate(storage, made["token"][:-1] + wrong_last) is None
    assert tokens.authenticate(storage, "") is None
    listed = storage.list_tokens()
    assert [t["name"] for t in listed] == ["claude"] and "token_hash" not in listed[0]


def test_a_revoked_token_is_refused_and_its_name_can_be_given_again(storage):
    old = tokens.create(storage, "ci", "read")
    with pytest.raises(Exception, match="already exists"):
        tokens.create(storage, "ci", "write")
    assert storage.revoke_token("ci") is True
    assert storage.revoke_token("ci") is False
    assert tokens.authenticate(storage, old["token"]) is None
    new = tokens.create(storage, "ci", "write")
    assert tokens.authenticate(storage, old["token"]) is None
    assert tokens.authenticate(storage, new["token"])["scope"] == "write"


def test_last_use_is_recorded(storage):
    tokens.create(storage, "laptop", "read")
    storage.mark_token_used("laptop", "2025-06-01T10:00:00.000000Z")
    assert storage.list_tokens()[0]["last_used_at"] == "2025-06-01T10:00:00.000000Z"


def test_writes_are_counted_per_token_and_minute_and_refused_past_the_limit(storage):
    now = datetime(2025, 6, 1, 10, 0, 15, tzinfo=UTC)
    for _ in range(3):
        tokens.take_write(storage, "a", 3, now)
    with pytest.raises(tokens.WriteLimitError, match="retry in 45 seconds"):
        tokens.take_write(storage, "a", 3, now)
    tokens.take_write(storage, "b", 3, now)
    tokens.take_write(storage, "a", 3, now + timedelta(minutes=1))


def write_windows(storage) -> list[str]:
    if storage.kind == "supabase":
        return sorted(row["window_start"] for row in storage.fake.rows("mcp_write_counts"))
    with storage._guard() as conn:
        rows = conn.execute("SELECT window_start FROM mcp_write_counts").fetchall()
    return sorted(str(row["window_start"] if isinstance(row, dict) else row[0]) for row in rows)


def test_a_new_minute_forgets_the_earlier_ones_and_its_count_starts_at_one(storage):
    window = "2025-06-01T10:00:00.000000Z"
    later = "2025-06-01T10:01:00.000000Z"
    assert [storage.count_token_write("a", window) for _ in range(3)] == [1, 2, 3]
    storage.count_token_write("b", window)
    assert storage.count_token_write("a", later) == 1
    assert storage.count_token_write("a", later) == 2
    assert len(write_windows(storage)) == 2  # a's new minute and b's, which a's writes never touch


def test_bookkeeping_that_skips_the_wait_for_the_disk_leaves_decision_writes_durable(storage):
    if storage.kind != "postgres":
        pytest.skip("only PostgreSQL commits bookkeeping without waiting for the disk")
    tokens.create(storage, "a", "write")
    storage.count_token_write("a", "2025-06-01T10:00:00.000000Z")
    storage.mark_token_used("a", "2025-06-01T10:00:01.000000Z")
    storage.record_activity("a", "record_decision", "completed", "created x", durable=False)
    with storage._guard() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"
    assert [a["agent_name"] for a in storage.iter_activity(action="record_decision")] == ["a"]
    assert storage.list_tokens()[0]["last_used_at"] == "2025-06-01T10:00:01.000000Z"


def test_a_revoked_token_passes_the_cache_only_until_its_bound(storage):
    made = tokens.create(storage, "ci", "write")
    cache = tokens.TokenCache(storage, 0.5)
    asked = time.monotonic()
    assert cache.authenticate(made["token"])["name"] == "ci"
    verified = time.monotonic()
    storage.revoke_token("ci")
    # Still trusted while the bound has not passed (checked only when this machine was quick enough to tell).
    if time.monotonic() - asked < 0.4:
        assert cache.authenticate(made["token"])["name"] == "ci"
    time.sleep(max(0.0, verified + 0.5 - time.monotonic()))
    assert cache.authenticate(made["token"]) is None
    assert cache.cached(made["token"]) is None


def test_with_no_cache_a_revoked_token_is_refused_at_once(storage):
    made = tokens.create(storage, "ci", "write")
    cache = tokens.TokenCache(storage, 0)
    assert cache.authenticate(made["token"])["name"] == "ci"
    storage.revoke_token("ci")
    assert cache.authenticate(made["token"]) is None


def test_an_unknown_secret_is_never_cached(storage):
    cache = tokens.TokenCache(storage, 60)
    wrong = tokens.PREFIX + "0" * 64
    assert cache.authenticate(wrong) is None
    assert cache.cached(wrong) is None


def test_concurrent_writes_each_get_their_own_count(storage):
    window = "2025-06-01T10:00:00.000000Z"
    counts: list[int] = []
    lock = threading.Lock()

    def writer():
        for _ in range(5):
            n = storage.count_token_write("shared", window)
            with lock:
                counts.append(n)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts) == list(range(1, 41))


def token_cli(run_script, *args):
    return run_script("tools/decisions.py", "token", *args)


def test_token_create_prints_the_secret_once_and_list_never_shows_it(home, run_script):
    assert run_script("run_migration.py").returncode == 0
    made = token_cli(run_script, "create", "claude-desktop", "--scope", "write", "--json")
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert set(answer) == {"name", "scope", "token"} and answer["scope"] == "write"
    text = token_cli(run_script, "create", "reader", "--scope", "read")
    assert text.returncode == 0 and text.stdout.startswith(tokens.PREFIX)
    listed = token_cli(run_script, "list")
    assert "claude-desktop" in listed.stdout and "reader" in listed.stdout and "2 tokens" in listed.stdout
    assert tokens.PREFIX not in listed.stdout + token_cli(run_script, "list", "--json").stdout
    logs = "".join(p.read_text() for p in (home / "logs").rglob("*.log"))
    assert "claude-desktop" in logs and answer["token"] not in logs


def test_token_commands_refuse_bad_input_in_one_line(run_script):
    assert run_script("run_migration.py").returncode == 0
    assert token_cli(run_script, "create", "ok", "--scope", "write").returncode == 0
    for args, says in (
        (("create", "ok", "--scope", "read"), "already exists"),
        (("create", "bad name!", "--scope", "read"), "token name"),
        (("create", "x", "--scope", "admin"), "invalid choice"),
        (("revoke", "nobody"), "no unrevoked token"),
    ):
        result = token_cli(run_script, *args)
        assert result.returncode == 1 and says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    revoked = token_cli(run_script, "revoke", "ok")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert "revoked" in token_cli(run_script, "list").stdout


def test_token_create_on_an_unmigrated_database_says_to_migrate(run_script):
    result = token_cli(run_script, "create", "early", "--scope", "write")
    assert result.returncode == 2 and "run_migration.py" in result.stderr
