#!/usr/bin/env python3
"""The scheduler daemon: health, sync, backup, restore drill, log rotation and cleanup on UTC timers."""

import argparse
import sys

from angles import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="print each job with its next run (UTC) and exit")
    group.add_argument("--run-now", metavar="JOB", help="run one job once in the foreground; exit with its exit code")
    parser.add_argument("--json", action="store_true", help="print --list or --run-now results as JSON")
    return parser


def main(args, settings) -> int:
    from angles.actions import scheduler

    if args.list:
        result = scheduler.run_list(settings)
        cli.emit(result, args.json, _list_text)
    elif args.run_now is not None:
        result = scheduler.run_job_now(settings, args.run_now)
        cli.emit(result, args.json, lambda r: f"{r['job']}: {r['status']} in {r['duration_s']:.1f}s ({r['details']})")
    else:
        result = scheduler.run_scheduler(settings)
    return result["exit_code"]


def _list_text(result) -> str:
    lines = [f"{'JOB':<14} {'SCHEDULE':<28} {'NEXT RUN (UTC)':<22} LAST RESULT"]
    for job in result["jobs"]:
        last = f"{job['last_result']} at {job['last_run']}" if job["last_result"] else "-"
        lines.append(f"{job['name']:<14} {job['schedule']:<28} {job['next_run']:<22} {last}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run("scheduler", build_parser(), main))
