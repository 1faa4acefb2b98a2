#!/usr/bin/env python3
"""One health snapshot: CPU, memory, disk, load, database, services, backups, scheduler, dashboard, sync.

Writes logs/active/system_health.json and appends to logs/active/system_health.log.
Exit code 0 when everything is ok or warning, 5 when a check is critical.
--test-alerts: a test ping and notification to each alert target; exit 0 when all pass, 3 when any fails.
"""

import argparse
import sys

from angles import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    parser.add_argument("--quiet", action="store_true", help="print only the checks that are not ok")
    parser.add_argument(
        "--test-alerts", action="store_true", help="send a test ping and notification to each alert target and exit"
    )
    return parser


def main(args, settings) -> int:
    if args.test_alerts:
        from angles.actions.alerts import run_test_alerts

        result = run_test_alerts(settings)
        cli.emit(result, args.json, _alert_text)
        return result["exit_code"]
    from angles.actions.monitor import run_monitor

    result = run_monitor(settings)
    if args.json:
        cli.emit(result, True)
    else:
        text = _text(result, quiet=args.quiet)
        if text:
            cli.emit(result, False, lambda _: text)
    if result["write_error"]:
        cli.print_error(result["write_error"])
    return result["exit_code"]


def _text(result, *, quiet: bool) -> str:
    rows = [
        (c["label"], c["status"].upper(), c["value"], c["reason"])
        for c in result["checks"].values()
        if not quiet or c["status"] != "ok"
    ]
    if quiet and not rows:
        return ""
    lines = []
    if rows:
        width = max(len(r[0]) for r in rows)
        lines += [f"{label:<{width}}  {status:<8}  {value:<14}  {reason}" for label, status, value, reason in rows]
    counts = result["counts"]
    lines.append(
        f"Overall: {result['status'].upper()} ({counts.get('warning', 0)} warning, {counts.get('critical', 0)} "
        f"critical) in {result['duration_s']:.2f} s; snapshot {result['snapshot']}"
    )
    return "\n".join(lines)


def _alert_text(result) -> str:
    lines = [
        f"{'PASS' if t['ok'] else 'FAIL'}  {t['target']}" + ("" if t["ok"] else f"  ({t['reason']})")
        for t in result["targets"]
    ]
    passed = sum(1 for t in result["targets"] if t["ok"])
    lines.append(f"{passed} of {len(result['targets'])} alert targets passed")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run("backend_monitor", build_parser(), main))
