"""The MCP server over streamable HTTP on a vault of 100,000 decisions: search and record latency, idle RSS.

The client is the SDK's own (one session, protocol 2025 as desktop assistants speak it), on the same machine.
Texts are bench_vault's (Zipf-distributed words); queries and new decisions come from the same distribution.
BENCH_MCP_BACKENDS=sqlite,postgres measures on each (default sqlite, the embedded default).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_vault import vault_rows
from bench.harness import ROOT, Row, bench_env, python, scratch_pg_database, settle_pg

ROWS = int(os.environ.get("BENCH_MCP_ROWS", "100000"))
CALLS = int(os.environ.get("BENCH_MCP_CALLS", "1000"))
BACKENDS = [b.strip() for b in os.environ.get("BENCH_MCP_BACKENDS", "sqlite").split(",") if b.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fill(env: dict) -> tuple[str, list[str]]:
    """A migrated vault of ROWS decisions, a write token and a sample of the texts (setup, not measured)."""
    from angles.assistants import tokens
    from angles.config import load_settings
    from angles.storage import migrations, open_storage

    settings = load_settings(env, dotenv=False)
    sample: list[str] = []

    def rows():
        for n, row in enumerate(vault_rows(ROWS, seed=11)):
            if n % max(1, ROWS // 1000) == 0:
                sample.append(row["decision"])
            yield {**row, "tags": json.loads(row["tags"])}

    with open_storage(settings) as storage:
        migrations.migrate(storage)
        storage.upsert_decisions(rows(), batch=5000)
        storage.refresh_search_statistics()
        return tokens.create(storage, "bench", "write")["token"], sample


def start(home: Path, env: dict, port: int) -> subprocess.Popen:
    import httpx

    # The write limit is lifted: the benchmark makes 1,000 writes in well under a minute.
    proc = subprocess.Popen(
        [python(), str(ROOT / "tools" / "mcp_server.py"), "--http", "--port", str(port)],
        cwd=home,
        env={**os.environ, **env, "MCP_WRITES_PER_MINUTE": "10000000"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tools/mcp_server.py exited {proc.returncode}: {proc.stderr.read()[:300]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("tools/mcp_server.py did not answer within 60 s")


def queries(texts: list[str], n: int) -> list[str]:
    """One-word, three-word and two-word phrase queries taken from stored texts, as a person would type them."""
    from angles.engines.search_query import STOP_WORDS

    rng = random.Random(5)
    out: list[str] = []
    while len(out) < n:
        words = [w.strip(".").lower() for w in rng.choice(texts).split()]
        content = sorted({w for w in words if w not in STOP_WORDS})
        if len(content) < 3:
            continue
        kind = len(out) % 3
        if kind == 0:
            out.append(rng.choice(content))
        elif kind == 1:
            out.append(" ".join(rng.sample(content, 3)))
        else:
            pairs = [(a, b) for a, b in zip(words, words[1:], strict=False) if a in content and b in content]
            if pairs:
                out.append('"{} {}"'.format(*rng.choice(pairs)))
    return out


def timed_calls(url: str, token: str, steps: list[tuple[str, dict]]) -> list[float]:
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def session() -> list[float]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        seconds = []
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            for tool, arguments in steps:
                started = time.perf_counter()
                result = await client.call_tool(tool, arguments)
                seconds.append(time.perf_counter() - started)
                if result.is_error:
                    raise RuntimeError(f"{tool} failed: {result.content[0].text[:200]}")
        return seconds

    return anyio.run(session)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def new_texts(seed: int) -> list[str]:
    return [f"{row['decision'][:19_000]} (benchmark {n})" for n, row in enumerate(vault_rows(CALLS, seed=seed))]


def in_process(env: dict, searches: list[str], texts: list[str]) -> dict[str, list[float]]:
    """The same vault calls without the server: the baseline the MCP layer adds to."""
    from angles.config import load_settings
    from angles.engines import vault
    from angles.storage import open_storage

    seconds: dict[str, list[float]] = {"search_decisions": [], "record_decision": []}
    with open_storage(load_settings(env, dotenv=False)) as storage:
        for query in searches:
            started = time.perf_counter()
            vault.search(storage, query, limit=10)
            seconds["search_decisions"].append(time.perf_counter() - started)
        for text in texts:
            started = time.perf_counter()
            vault.record(storage, {"decision": text, "type": "technical"}, source="agent:baseline")
            seconds["record_decision"].append(time.perf_counter() - started)
    return seconds


def measure(env: dict, home: Path) -> dict:
    """Latencies in seconds over HTTP and in-process, idle RSS in MB before and after the calls."""
    import psutil

    token, sample = fill(env)
    if env.get("DATABASE_URL"):
        settle_pg(env["DATABASE_URL"])
    searches = queries(sample, CALLS)
    baseline = in_process(env, searches, new_texts(seed=98))
    port = free_port()
    proc = start(home, env, port)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        timed_calls(url, token, [("search_decisions", {"query": q}) for q in queries(sample, 20)])
        time.sleep(2)
        server = psutil.Process(proc.pid)
        idle_mb = server.memory_info().rss / 2**20
        phases = {
            "search_decisions": [("search_decisions", {"query": q}) for q in searches],
            "record_decision": [("record_decision", {"text": t, "type": "technical"}) for t in new_texts(seed=99)],
        }
        http, cpu_ms = {}, {}
        for name, steps in phases.items():
            # The server's own CPU time per call, which a busy machine does not inflate the way it does latency.
            before = sum(server.cpu_times()[:2])
            http[name] = timed_calls(url, token, steps)
            cpu_ms[name] = (sum(server.cpu_times()[:2]) - before) / len(steps) * 1000
        time.sleep(2)
        after_mb = server.memory_info().rss / 2**20
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return {"http": http, "baseline": baseline, "cpu_ms": cpu_ms, "idle_mb": idle_mb, "after_mb": after_mb}


def bench_mcp(ctx) -> list[Row]:
    rows = []
    for backend in BACKENDS:
        home = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
        try:
            if backend == "postgres":
                with scratch_pg_database() as url:
                    got = measure(bench_env(home, DATABASE_URL=url), home)
            else:
                got = measure(bench_env(home), home)
        finally:
            subprocess.run(["rm", "-rf", str(home)], check=False)
        scale = f"{ROWS:,} decisions, {CALLS:,} calls"
        for name in ("search_decisions", "record_decision"):
            values, base = got["http"][name], got["baseline"][name]
            p99, base_p99 = percentile(values, 99) * 1000, percentile(base, 99) * 1000
            rows.append(
                Row(
                    f"MCP {name} over HTTP ({backend}): p99",
                    round(p99, 1),
                    "ms",
                    "≤ 50 ms",
                    p99 <= 50,
                    baseline=round(base_p99, 1),
                    ratio=round(p99 / base_p99, 2),
                    note=f"{scale}; p50 {percentile(values, 50) * 1000:.1f} ms; server CPU {got['cpu_ms'][name]:.1f} ms"
                    f" per call; baseline: the same vault call in-process (p50 {percentile(base, 50) * 1000:.1f} ms)",
                )
            )
        rows.append(
            Row(
                f"MCP server idle RSS ({backend})",
                round(got["idle_mb"], 1),
                "MB",
                "≤ 90 MB",
                got["idle_mb"] <= 90,
                note=f"after warm-up; {got['after_mb']:.1f} MB idle after the {2 * CALLS:,} calls",
            )
        )
    return rows


BENCHMARKS = {"mcp": bench_mcp}

if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from bench.run import render

    print(render([r.as_dict() for r in bench_mcp({})]))
