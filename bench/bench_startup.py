"""`python <script>.py --help` for each script against `python -c pass`: heavy imports must be lazy."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.harness import Row, bench_env, python, run_measured

SCRIPTS = (
    "scheduler.py",
    "memory_sync.py",
    "backend_monitor.py",
    "run_backup_now.py",
    "restore_from_github.py",
    "run_migration.py",
    "verify_deployment.py",
    "tools/health_server.py",
    "tools/decisions.py",
)
REPEATS = 5


def _median_seconds(cmd: list[str], env: dict) -> float:
    times = []
    for _ in range(REPEATS):
        seconds, _, result = run_measured(cmd, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[1:])} exited {result.returncode}: {result.stderr.strip()[:120]}")
        times.append(seconds)
    return statistics.median(times)


def bench_help(ctx) -> list[Row]:
    home = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    env = bench_env(home)
    baselines = [_median_seconds([python(), "-c", "pass"], env)]
    timings = {}
    for script in SCRIPTS:
        try:
            timings[script] = _median_seconds([python(), script, "--help"], env)
        except RuntimeError as exc:
            timings[script] = exc
    baselines.append(_median_seconds([python(), "-c", "pass"], env))
    baseline = min(baselines)
    rows = []
    for script, seconds in timings.items():
        if isinstance(seconds, RuntimeError):
            rows.append(Row(f"{script} --help", None, "s", "≤ 0.3 s above baseline", False, note=str(seconds)))
            continue
        over = seconds - baseline
        rows.append(
            Row(
                f"{script} --help",
                round(seconds, 3),
                "s",
                "≤ 0.3 s above baseline",
                over <= 0.3,
                baseline=round(baseline, 3),
                ratio=round(seconds / baseline, 2),
                note=f"+{over:.3f} s",
                baselines=[round(b, 3) for b in baselines],
            )
        )
    return rows


def bench_monitor(ctx) -> list[Row]:
    home = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    env = bench_env(home)
    run_measured([python(), "run_migration.py"], env=env)
    times = [run_measured([python(), "backend_monitor.py", "--quiet"], env=env)[0] for _ in range(REPEATS)]
    seconds = statistics.median(times)
    return [
        Row(
            "python backend_monitor.py, embedded default",
            round(seconds, 3),
            "s",
            "< 2 s",
            seconds < 2,
            note=f"median of {REPEATS}, max {max(times):.3f} s",
        )
    ]


BENCHMARKS = {"startup": bench_help, "monitor": bench_monitor}
