"""The assistants' door as an operator runs it: tools/mcp_server.py over HTTP (tokens, Origin, write limit,
concurrency, two instances on one PostgreSQL) and over stdio with the SDK's own clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from angles.assistants import tokens
from angles.storage.postgres import PostgresStorage
from tests.conftest import CONFIG_VARS, ROOT

LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Servers:
    """tools/mcp_server.py --http processes started by one test, stopped after it."""

    def __init__(self, home):
        self.home = home
        self.procs: list[subprocess.Popen] = []

    def env(self, extra: dict | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
        env.update({"ANGLES_HOME": str(self.home), **(extra or {})})
        return env

    def start(self, *, env: dict | None = None, host: str = "127.0.0.1") -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "mcp_server.py"), "--http", "--host", host, "--port", str(port)],
            cwd=self.home,
            env=self.env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return f"{base}/mcp"
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("server did not start within 30 s")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=15)


@pytest.fixture
def migrated(home, run_script):
    assert run_script("run_migration.py").returncode == 0
    return home


@pytest.fixture
def servers(migrated):
    running = Servers(migrated)
    yield running
    running.stop()


def make_token(settings, name: str, scope: str = "write") -> str:
    from angles.storage import open_storage

    with open_storage(settings) as storage:
        return tokens.create(storage, name, scope)["token"]


def client(url: str, token: str | None, *, mode: str = "legacy") -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers)), mode=mode)


def calls(url: str, token: str, *steps, mode: str = "legacy"):
    async def session():
        async with client(url, token, mode=mode) as c:
            return [await c.call_tool(tool, arguments) for tool, arguments in steps]

    return anyio.run(session)


def post(url: str, token: str | None = None, **headers) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, json=LIST_TOOLS, headers={**JSON_HEADERS, **headers}, timeout=10)


def test_http_needs_a_valid_unrevoked_token(settings, servers, run_script):
    token = make_token(settings, "claude")
    url = servers.start(env={"MCP_TOKEN_CACHE_SECONDS": "0"})
    assert post(url).status_code == 401
    assert post(url, "angles_mcp_" + "0" * 64).status_code == 401
    assert post(url, "not even a token").status_code == 401
    answer = post(url, token)
    assert answer.status_code == 200 and "record_decision" in answer.text
    assert run_script("tools/decisions.py", "token", "revoke", "claude").returncode == 0
    refused = post(url, token)
    assert refused.status_code == 401 and token not in refused.text


def test_a_revoked_token_is_refused_once_the_token_cache_bound_has_passed(settings, servers, run_script):
    token = make_token(settings, "claude")
    bound = 3.0
    url = servers.start(env={"MCP_TOKEN_CACHE_SECONDS": str(bound)})
    asked = time.monotonic()
    assert post(url, token).status_code == 200
    verified = time.monotonic()
    assert run_script("tools/decisions.py", "token", "revoke", "claude").returncode == 0
    if time.monotonic() - asked < bound - 1:
        assert post(url, token).status_code == 200
    time.sleep(max(0.0, verified + bound - time.monotonic()))
    refused = post(url, token)
    assert refused.status_code == 401 and token not in refused.text


def test_a_foreign_origin_is_refused_and_loopback_or_allowed_origins_pass(settings, servers):
    token = make_token(settings, "browser")
    url = servers.start(env={"MCP_ALLOWED_ORIGINS": "https://app.example.com"})
    assert post(url, token, Origin="http://evil.example").status_code == 403
    assert post(url, token, Origin="http://127.0.0.1.evil.example").status_code == 403
    assert post(url, token, Origin="null").status_code == 403
    assert post(url, token, Origin="https://app.example.com").status_code == 200
    assert post(url, token, Origin="http://localhost:3000").status_code == 200


def test_a_read_token_searches_but_may_not_write(settings, servers, sqlite_storage):
    reader, writer = make_token(settings, "reader", "read"), make_token(settings, "writer")
    url = servers.start()
    (made,) = calls(url, writer, ("record_decision", {"text": "Cache search results for a minute"}))
    refused, found = calls(
        url,
        reader,
        ("record_decision", {"text": "Readers should not write"}),
        ("search_decisions", {"query": "cache"}),
    )
    assert refused.is_error and "this token may only read" in refused.content[0].text
    assert [h["id"] for h in found.structured_content["hits"]] == [made.structured_content["id"]]
    assert sqlite_storage.count_decisions() == 1


def test_every_write_is_recorded_as_the_tokens_agent(settings, servers, sqlite_storage, run_script):
    token = make_token(settings, "cursor-laptop")
    url = servers.start()
    (made,) = calls(url, token, ("record_decision", {"text": "Name branches after tickets"}), mode="auto")
    assert not made.is_error, made.content[0].text
    activity = list(sqlite_storage.iter_activity(agent_name="cursor-laptop"))
    assert [a["action"] for a in activity] == ["record_decision"]
    listed = run_script("tools/decisions.py", "token", "list", "--json")
    assert '"last_used_at": null' not in listed.stdout


def test_writes_beyond_the_per_minute_limit_are_refused_with_when_to_retry(settings, servers, sqlite_storage):
    token = make_token(settings, "busy")
    url = servers.start(env={"MCP_WRITES_PER_MINUTE": "3"})
    if datetime.now(UTC).second > 50:  # all four writes must fall in one minute
        time.sleep(61 - datetime.now(UTC).second)
    results = calls(url, token, *[("record_decision", {"text": f"Limit test decision {n}"}) for n in range(4)])
    assert [r.is_error for r in results] == [False, False, False, True]
    assert "retry in" in results[3].content[0].text and "seconds" in results[3].content[0].text
    assert sqlite_storage.count_decisions() == 3


def test_ten_concurrent_clients_record_a_hundred_decisions_none_lost_or_doubled(settings, servers, sqlite_storage):
    names = [f"agent-{n}" for n in range(10)]
    secrets = {name: make_token(settings, name) for name in names}
    url = servers.start()
    answers: dict[str, list] = {}

    async def one_client(name: str):
        async with client(url, secrets[name]) as c:
            answers[name] = [
                await c.call_tool("record_decision", {"text": f"{name} decides item {i}"}) for i in range(10)
            ]

    async def everyone():
        async with anyio.create_task_group() as group:
            for name in names:
                group.start_soon(one_client, name)

    anyio.run(everyone)
    results = [r for per_client in answers.values() for r in per_client]
    assert not [r.content[0].text for r in results if r.is_error]
    assert len({r.structured_content["id"] for r in results}) == 100
    stored = sorted(r["decision"] for r in sqlite_storage.iter_decisions())
    assert stored == sorted(f"{name} decides item {i}" for name in names for i in range(10))
    for name in names:
        assert len(list(sqlite_storage.iter_activity(agent_name=name))) == 10


def test_serving_beyond_loopback_without_any_token_is_refused(servers, run_script):
    result = run_script("tools/mcp_server.py", "--http", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "no token exists" in result.stderr


def test_a_stdio_session_records_and_searches_as_the_configured_agent(servers, sqlite_storage):
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(ROOT / "tools" / "mcp_server.py")],
        env=servers.env({"MCP_AGENT_NAME": "desktop"}),
        cwd=str(servers.home),
    )

    async def session():
        async with Client(params, mode="legacy") as c:
            made = await c.call_tool("record_decision", {"text": "Write docs next to the code", "type": "process"})
            found = await c.call_tool("search_decisions", {"query": "docs"})
            return made, found

    made, found = anyio.run(session)
    assert made.structured_content["status"] == "created"
    assert [h["id"] for h in found.structured_content["hits"]] == [made.structured_content["id"]]
    assert [a["action"] for a in sqlite_storage.iter_activity(agent_name="desktop")] == ["record_decision"]


def test_the_health_check_probes_the_mcp_server_when_it_is_meant_to_run(clean_env, home, servers):
    from angles.config import load_settings
    from angles.health.assistants import MCPServerCheck
    from angles.health.base import Context

    off = load_settings()
    assert MCPServerCheck().run(off, Context(off)).value == "off"
    url = servers.start()
    clean_env.setenv("MCP_HTTP_URL", url)
    up = load_settings()
    result = MCPServerCheck().run(up, Context(up))
    assert result.status == "ok" and result.metrics["mcp_up"] == 1
    clean_env.setenv("MCP_HTTP_URL", f"http://127.0.0.1:{free_port()}/mcp")
    down = load_settings()
    result = MCPServerCheck().run(down, Context(down))
    assert result.status == "warning" and result.metrics["mcp_up"] == 0


@pytest.mark.postgres
def test_two_instances_on_one_postgres_serve_one_vault_with_shared_tokens_and_limits(home, pg_url, run_script):
    env = {"DATABASE_URL": pg_url, "MCP_WRITES_PER_MINUTE": "4", "MCP_TOKEN_CACHE_SECONDS": "1"}
    assert run_script("run_migration.py", env=env).returncode == 0
    made = run_script("tools/decisions.py", "token", "create", "fleet", "--scope", "write", "--json", env=env)
    token = json.loads(made.stdout)["token"]
    running = Servers(home)
    try:
        first, second = running.start(env=env), running.start(env=env)
        if datetime.now(UTC).second > 45:
            time.sleep(61 - datetime.now(UTC).second)
        (a,) = calls(first, token, ("record_decision", {"text": "Serve the vault from two instances"}))
        decision_id = a.structured_content["id"]
        (found,) = calls(second, token, ("search_decisions", {"query": "instances"}))
        assert [h["id"] for h in found.structured_content["hits"]] == [decision_id]
        (shown,) = calls(first, token, ("get_decision", {"id": decision_id[:8]}))
        assert shown.structured_content["decision"]["id"] == decision_id
        (again,) = calls(second, token, ("record_decision", {"text": "serve the vault from two instances."}))
        assert again.structured_content == {**again.structured_content, "id": decision_id}
        (superseded,) = calls(
            first, token, ("supersede_decision", {"old_id": decision_id, "new_text": "Serve it from three"})
        )
        assert not superseded.is_error, superseded.content[0].text
        new_id = superseded.structured_content["new_id"]
        link = {"from_id": new_id, "to_id": decision_id, "kind": "refines"}
        # Four writes so far, alternating instances; the limit of 4 is shared, so the fifth is refused anywhere.
        linked, fifth = calls(second, token, ("link_decisions", link), ("record_decision", {"text": "One too many"}))
        assert not linked.is_error, linked.content[0].text
        assert fifth.is_error and "retry in" in fifth.content[0].text
        with PostgresStorage(pg_url) as storage:
            actions = [a["action"] for a in storage.iter_activity(agent_name="fleet")]
        assert actions == ["record_decision", "record_decision", "supersede_decision", "link_decisions"]
        assert run_script("tools/decisions.py", "token", "revoke", "fleet", env=env).returncode == 0
        time.sleep(1.1)  # MCP_TOKEN_CACHE_SECONDS: how long each instance may still trust what it verified
        assert post(first, token).status_code == 401 and post(second, token).status_code == 401
    finally:
        running.stop()
