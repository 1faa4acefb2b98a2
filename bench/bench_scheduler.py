#!/usr/bin/env python3
"""Idle cost of the scheduler daemon: CPU over a window (percent of one core) and resident memory.

Starts scheduler.py on a fresh embedded default (or on DATABASE_URL when given), lets the start-up runs
finish, then samples the process with psutil. Usage: python bench/bench_scheduler.py [--seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def measure(seconds: float, settle: float, env_extra: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="angles-bench-") as home:
        env = {**os.environ, "ANGLES_HOME": home, **env_extra}
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py")],
            cwd=home,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            process = psutil.Process(proc.pid)
            time.sleep(settle)
            before = process.cpu_times()
            started = time.monotonic()
            peak_rss = 0
            while time.monotonic() - started < seconds:
                peak_rss = max(peak_rss, process.memory_info().rss)
                time.sleep(1)
            after = process.cpu_times()
            elapsed = time.monotonic() - started
            cpu = (after.user + after.system) - (before.user + before.system)
            rss = process.memory_info().rss
            threads = process.num_threads()
            stop_started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
            return {
                "database": env_extra.get("DATABASE_URL", "embedded SQLite").split("@")[-1],
                "window_s": round(elapsed, 1),
                "cpu_percent_of_one_core": round(100 * cpu / elapsed, 3),
                "rss_mb": round(rss / 1024 / 1024, 1),
                "peak_rss_mb": round(peak_rss / 1024 / 1024, 1),
                "threads": threads,
                "sigterm_exit_code": code,
                "sigterm_seconds": round(time.monotonic() - stop_started, 2),
            }
        finally:
            if proc.poll() is None:
                proc.kill()


def bench_idle(ctx) -> list:
    from bench.harness import Row, scratch_pg_database
    from tests.fakes.notion_server import FakeNotion
    from tests.fakes.openai_server import FakeOpenAI
    from tests.test_memory_sync import SCHEMA

    rows = []
    embedded = measure(60, 10, {})
    notion = FakeNotion(rps=50, burst=50)
    notion.start()
    try:
        with FakeOpenAI() as openai, scratch_pg_database() as url:
            subprocess.run(
                [sys.executable, str(ROOT / "run_migration.py")],
                env={**os.environ, "DATABASE_URL": url},
                check=True,
                capture_output=True,
            )
            env = {
                "DATABASE_URL": url,
                "NOTION_TOKEN": notion.token,
                "NOTION_DATABASE_ID": notion.add_database(SCHEMA),
                "NOTION_BASE_URL": notion.base_url,
                "OPENAI_API_KEY": openai.key,
                "OPENAI_BASE_URL": openai.base_url,
            }
            configured = measure(60, 15, env)
    finally:
        notion.stop()
    for label, result, rss_target in (("embedded default", embedded, 60), ("all integrations", configured, 110)):
        cpu, rss = result["cpu_percent_of_one_core"], result["peak_rss_mb"]
        rows.append(Row(f"idle scheduler 60 s, {label}: CPU", cpu, "% of one core", "≤ 0.5 %", cpu <= 0.5))
        rows.append(
            Row(
                f"idle scheduler 60 s, {label}: peak RSS",
                rss,
                "MB",
                f"≤ {rss_target} MB",
                rss <= rss_target,
                note=f"SIGTERM exit {result['sigterm_exit_code']} in {result['sigterm_seconds']} s",
            )
        )
    return rows


BENCHMARKS = {"scheduler": bench_idle}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="measurement window (default 60)")
    parser.add_argument("--settle", type=float, default=10, help="seconds to let start-up runs finish (default 10)")
    parser.add_argument("--database-url", help="measure on this database instead of the embedded default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra = {"DATABASE_URL": args.database_url} if args.database_url else {}
    result = measure(args.seconds, args.settle, extra)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
