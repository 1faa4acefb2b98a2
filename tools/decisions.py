#!/usr/bin/env python3
"""Add, list, show and import decisions by hand; manage the MCP server's tokens."""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from angles import cli  # noqa: E402 - the project root must be importable first


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = commands.add_parser("add", help="store one new decision")
    add.add_argument("text", help="the decision, in full")
    add.add_argument("--type", help="strategy, technical, architecture, process, security, ethical, product, other")
    add.add_argument("--priority", help="P0, P1 or P2")
    add.add_argument("--tags", help="comma-separated tags")
    add.add_argument("--comment", help="a note kept with the decision")
    add.add_argument("--date", help="when it was decided (YYYY-MM-DD, default today)")

    listing = commands.add_parser("list", help="list decisions, oldest first")
    listing.add_argument("--type", help="only this type")
    listing.add_argument("--priority", help="only this priority")
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_const", const=True, help="only active decisions")
    state.add_argument("--inactive", dest="active", action="store_const", const=False, help="only inactive ones")
    listing.add_argument("--since", help="only decisions dated on or after YYYY-MM-DD")

    show = commands.add_parser("show", help="every stored field of one decision")
    show.add_argument("id", help="the decision's id, or the first characters of it as `list` prints")

    imports = commands.add_parser("import", help="import decisions from a JSON or CSV file")
    imports.add_argument("file", type=Path, help='a JSON list, {"decisions": [...]}, or CSV with a header')
    imports.add_argument("--dry-run", action="store_true", help="report what would change and write nothing")

    for sub in (add, listing, show, imports):
        sub.add_argument("--json", action="store_true", help="print the result as JSON")
    add_token_commands(commands)
    return parser


def add_token_commands(commands) -> None:
    """`token create|list|revoke`: bearer tokens of the assistants' HTTP door (tools/mcp_server.py --http)."""
    token = commands.add_parser("token", help="bearer tokens for the MCP server over HTTP")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token and print it, once")
    create.add_argument("name", help="who uses it; recorded as the agent of every write made with it")
    create.add_argument("--scope", required=True, choices=("read", "write"), help="read: search and get only")
    listing = actions.add_parser("list", help="every token: name, scope, created, last used, revoked")
    revoke = actions.add_parser("revoke", help="refuse a token from now on")
    revoke.add_argument("name", help="the token's name")
    for sub in (create, listing, revoke):
        sub.add_argument("--json", action="store_true", help="print the result as JSON")


def run_token_command(args, settings) -> int:
    from angles.actions import tokens

    if args.token_command == "create":
        result = tokens.run_token_create(settings, args.name, args.scope)
        shown = {k: result[k] for k in ("name", "scope", "token")}
        cli.emit(shown if args.json else result, args.json, tokens.text_create)
    elif args.token_command == "list":
        result = tokens.run_token_list(settings)
        cli.emit(result, args.json, tokens.text_list)
    else:
        result = tokens.run_token_revoke(settings, args.name)
        cli.emit(result, args.json, tokens.text_revoke)
    return result["exit_code"]


def main(args, settings) -> int:
    from angles.actions import decisions

    if args.command == "token":
        return run_token_command(args, settings)
    if args.command == "add":
        result = decisions.run_add(
            settings,
            text=args.text,
            type=args.type,
            priority=args.priority,
            tags=args.tags,
            comment=args.comment,
            on=args.date,
        )
        cli.emit(result, args.json, decisions.text_add)
    elif args.command == "list":
        result = decisions.run_list(
            settings, type=args.type, priority=args.priority, active=args.active, since=args.since
        )
        cli.emit(result, args.json, decisions.text_list)
    elif args.command == "show":
        result = decisions.run_show(settings, args.id)
        cli.emit(result, args.json, decisions.text_show)
    else:
        result = decisions.run_import(settings, args.file, dry_run=args.dry_run)
        cli.emit(result, args.json, decisions.text_import)
    return result["exit_code"]


if __name__ == "__main__":
    sys.exit(cli.run("decisions", build_parser(), main))
