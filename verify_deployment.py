#!/usr/bin/env python3
"""The whole deployment checklist as PASS / WARN / FAIL lines with a fix hint each; exit 0 when nothing FAILs."""

import argparse
import sys

from angles import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def main(args, settings) -> int:
    from angles.actions.verify import run_verify_deployment

    result = run_verify_deployment(settings)
    cli.emit(result, args.json, _table)
    return result["exit_code"]


def _table(result) -> str:
    width = max(len(c["check"]) for c in result["checks"])
    lines = []
    for check in result["checks"]:
        lines.append(f"{check['status']}  {check['check']:<{width}}  {check['detail']}")
        if check["hint"] and not check["detail"].endswith(check["hint"]):
            lines.append(f"      {'':<{width}}  fix: {check['hint']}")
    s = result["summary"]
    lines.append(f"\n{s['PASS']} passed, {s['WARN']} warnings, {s['FAIL']} failed")
    lines.append("results: logs/active/verification_results.json")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run("verify_deployment", build_parser(), main))
