"""What every benchmark shares: result rows, timing, peak memory, scratch databases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Row:
    benchmark: str
    measured: float | None
    unit: str
    target: str
    met: bool | None
    baseline: float | None = None
    ratio: float | None = None
    note: str = ""
    # Every measurement of the baseline in this run; when they disagree by more than NOISE the machine was busy.
    baselines: list[float] = field(default_factory=list)
    machine: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def baseline_spread(self) -> float | None:
        """How far the baseline moved between its repeats (0.25 = 25%); None with fewer than two."""
        if len(self.baselines) < 2 or min(self.baselines) <= 0:
            return None
        return max(self.baselines) / min(self.baselines) - 1

    @property
    def noisy(self) -> bool:
        spread = self.baseline_spread
        return spread is not None and spread > NOISE


NOISE = 0.20


def ratio_row(
    benchmark: str, measured: float, baselines: list[float], unit: str, limit: float, target: str, **extra
) -> Row:
    """A row judged by measured / baseline ≤ limit; the baseline is the fastest of its repeats (the strictest ratio)."""
    base = min(baselines)
    ratio = measured / base
    return Row(
        benchmark,
        round(measured, 3),
        unit,
        target,
        ratio <= limit,
        baseline=round(base, 3),
        ratio=round(ratio, 2),
        baselines=[round(b, 3) for b in baselines],
        **extra,
    )


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def run_measured(cmd: list[str], *, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    """Run a command; return (seconds, peak RSS in MB of the child, completed process)."""
    full_env = {**os.environ, **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", *cmd],
        cwd=cwd or ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=timeout)
    seconds = time.perf_counter() - start
    lines = err.strip().splitlines()
    peak_kb = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, "\n".join(lines[:-1]))
    return seconds, peak_kb / 1024, result


@contextmanager
def scratch_pg_database():
    """A fresh PostgreSQL database URL, dropped afterwards."""
    import psycopg

    name = f"angles_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settle_pg(url: str) -> None:
    """VACUUM ANALYZE the vault and CHECKPOINT before a latency row: what autovacuum and the checkpointer would
    do on their own in the next minutes after a bulk load, done before the timing rather than during it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE decision_vault")
        conn.execute("CHECKPOINT")


def python() -> str:
    return sys.executable


def bench_env(home: Path, **extra) -> dict:
    env = {"ANGLES_HOME": str(home)}
    env.update({k: str(v) for k, v in extra.items()})
    return env
