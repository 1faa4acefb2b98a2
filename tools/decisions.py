#!/usr/bin/env python3
"""Add, list, show, import, search, edit and supersede decisions, see their history and link them;
manage the MCP server's tokens."""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from angles import cli  # noqa: E402 - the project root must be importable first

TYPES_HELP = "strategy, technical, architecture, process, security, ethical, product, other"
KINDS_HELP = "depends_on, relates_to, conflicts_with, refines"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = commands.add_parser("add", help="store one new decision (an exact duplicate is not stored twice)")
    add.add_argument("text", help="the decision, in full")
    add.add_argument("--type", help=TYPES_HELP)
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

    show = commands.add_parser("show", help="every field of one decision, its supersede chain, links and history")
    show.add_argument("id", help="the decision's id, or its first 8 or more characters as `list` prints")

    imports = commands.add_parser("import", help="import decisions from a JSON or CSV file")
    imports.add_argument("file", type=Path, help='a JSON list, {"decisions": [...]}, or CSV with a header')
    imports.add_argument("--dry-run", action="store_true", help="report what would change and write nothing")

    search = commands.add_parser("search", help="find decisions by what they say, best match first")
    search.add_argument("query", help='words (all must match), "a phrase", -excluded, OR between alternatives')
    search.add_argument("--type", help="only this type")
    search.add_argument("--priority", help="only this priority")
    search.add_argument("--tag", help="only decisions with this tag")
    search.add_argument("--since", help="only decisions dated on or after YYYY-MM-DD")
    search.add_argument("--until", help="only decisions dated on or before YYYY-MM-DD")
    search.add_argument("--all", action="store_true", help="include superseded and inactive decisions")
    search.add_argument("--limit", type=int, default=20, help="at most this many results (default 20, at most 200)")

    edit = commands.add_parser("edit", help="change a decision; the version before is kept in its history")
    edit.add_argument("id", help="the decision's id or its first 8 or more characters")
    edit.add_argument("--text", help="the new text of the decision")
    edit.add_argument("--type", help=TYPES_HELP)
    edit.add_argument("--priority", help="P0, P1 or P2")
    edit.add_argument("--tags", help="comma-separated tags (replaces the tags)")
    edit.add_argument("--comment", help="a note kept with the decision (replaces the comment)")
    edit.add_argument("--date", help="when it was decided (YYYY-MM-DD)")
    active = edit.add_mutually_exclusive_group()
    active.add_argument("--active", dest="active", action="store_const", const=True, help="make it active")
    active.add_argument("--inactive", dest="active", action="store_const", const=False, help="make it inactive")

    history = commands.add_parser("history", help="every earlier version of a decision and what changed")
    history.add_argument("id", help="the decision's id or its first 8 or more characters")

    supersede = commands.add_parser("supersede", help="replace a decision by a newer one; the old one stays")
    supersede.add_argument("old", help="the id (or prefix) of the decision being replaced")
    replacement = supersede.add_mutually_exclusive_group(required=True)
    replacement.add_argument("--by", help="the id (or prefix) of an existing decision that replaces it")
    replacement.add_argument("--text", help="the text of a new decision that replaces it")
    supersede.add_argument("--type", help=f"the new decision's type ({TYPES_HELP}); with --text")
    supersede.add_argument("--priority", help="the new decision's priority; with --text")
    supersede.add_argument("--tags", help="the new decision's tags; with --text")
    supersede.add_argument("--reason", help="why it is replaced")

    link = commands.add_parser("link", help="link one decision to another")
    link.add_argument("from_id", metavar="A", help="the decision the link starts from (id or prefix)")
    link.add_argument("to_id", metavar="B", help="the decision it points to (id or prefix)")
    link.add_argument("--kind", required=True, help=KINDS_HELP)

    unlink = commands.add_parser("unlink", help="remove the links from one decision to another")
    unlink.add_argument("from_id", metavar="A", help="the decision the link starts from (id or prefix)")
    unlink.add_argument("to_id", metavar="B", help="the decision it points to (id or prefix)")
    unlink.add_argument("--kind", help=f"only this kind of link ({KINDS_HELP}); default every kind")

    similar = commands.add_parser("similar", help="the decisions closest in wording to one decision or a text")
    similar.add_argument("target", metavar="ID_OR_TEXT", help="a decision id (or prefix), or any text")
    similar.add_argument("--limit", type=int, default=3, help="at most this many (default 3)")

    for sub in (add, listing, show, imports, search, edit, history, supersede, link, unlink, similar):
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
    from angles.errors import ValidationError
    from angles.progress import watching

    command = args.command
    if command == "token":
        return run_token_command(args, settings)
    if command == "add":
        result = decisions.run_add(
            settings,
            text=args.text,
            type=args.type,
            priority=args.priority,
            tags=args.tags,
            comment=args.comment,
            on=args.date,
        )
        text = decisions.text_add
    elif command == "list":
        result = decisions.run_list(
            settings, type=args.type, priority=args.priority, active=args.active, since=args.since
        )
        text = decisions.text_list
    elif command == "show":
        result, text = decisions.run_show(settings, args.id), decisions.text_show
    elif command == "import":
        result = decisions.run_import(settings, args.file, dry_run=args.dry_run, progress=watching(args.json))
        text = decisions.text_import
    elif command == "search":
        result = decisions.run_search(
            settings,
            args.query,
            type=args.type,
            priority=args.priority,
            tag=args.tag,
            since=args.since,
            until=args.until,
            include_inactive=args.all,
            limit=args.limit,
        )
        text = decisions.text_search
    elif command == "edit":
        names = {"text": "decision", "type": "type", "priority": "priority", "tags": "tags", "comment": "comment"}
        changes = {field: getattr(args, flag) for flag, field in names.items() if getattr(args, flag) is not None}
        if args.date is not None:
            changes["date"] = args.date
        if args.active is not None:
            changes["active"] = args.active
        result, text = decisions.run_edit(settings, args.id, changes), decisions.text_edit
    elif command == "history":
        result, text = decisions.run_history(settings, args.id), decisions.text_history
    elif command == "supersede":
        extra = {"type": args.type, "priority": args.priority, "tags": args.tags}
        if args.by is not None and any(v is not None for v in extra.values()):
            raise ValidationError("--type, --priority and --tags describe a new decision: use them with --text")
        new_fields = None
        if args.text is not None:
            new_fields = {"decision": args.text, **{k: v for k, v in extra.items() if v is not None}}
        result = decisions.run_supersede(settings, args.old, by=args.by, new_fields=new_fields, reason=args.reason)
        text = decisions.text_supersede
    elif command == "link":
        result, text = decisions.run_link(settings, args.from_id, args.to_id, args.kind), decisions.text_link
    elif command == "unlink":
        result, text = decisions.run_unlink(settings, args.from_id, args.to_id, args.kind), decisions.text_unlink
    else:
        result, text = decisions.run_similar(settings, args.target, limit=args.limit), decisions.text_similar
    cli.emit(result, args.json, text)
    return result["exit_code"]


if __name__ == "__main__":
    sys.exit(cli.run("decisions", build_parser(), main))
