"""Managing the bearer tokens of the assistants' HTTP door: create (shown once), list, revoke."""

from __future__ import annotations

import logging

from angles.assistants import tokens
from angles.errors import DatabaseError, ValidationError
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)


def _migrated(storage) -> None:
    todo = migrations.pending(storage)
    if todo:
        raise DatabaseError(
            f"the database schema lacks {len(todo)} migration(s) (latest {todo[-1].version}); "
            "run `python run_migration.py` first"
        )


def run_token_create(settings, name: str, scope: str) -> dict:
    """Make a token; the answer carries its secret, which is stored nowhere."""
    with open_storage(settings, create=False) as storage:
        _migrated(storage)
        made = tokens.create(storage, name, scope)
        storage.record_activity("decisions", "token_create", "completed", f"created {scope} token {made['name']}")
    logger.info("token %s (%s) created", made["name"], scope)
    return {**made, "exit_code": 0}


def run_token_list(settings) -> dict:
    with open_storage(settings, create=False) as storage:
        rows = storage.list_tokens()
    return {"count": len(rows), "tokens": rows, "exit_code": 0}


def run_token_revoke(settings, name: str) -> dict:
    with open_storage(settings, create=False) as storage:
        _migrated(storage)
        if not storage.revoke_token(name):
            raise ValidationError(f"no unrevoked token named {name!r} (see `tools/decisions.py token list`)")
        storage.record_activity("decisions", "token_revoke", "completed", f"revoked token {name}")
    logger.info("token %s revoked", name)
    return {"name": name, "revoked": True, "exit_code": 0}


def text_create(result: dict) -> str:
    return (
        f"{result['token']}\n"
        f"created {result['scope']} token {result['name']!r}: copy it now, it is not stored and will not be shown again"
    )


def text_list(result: dict) -> str:
    lines = []
    for t in result["tokens"]:
        state = f"revoked {t['revoked_at'][:19]}" if t["revoked_at"] else "active"
        used = t["last_used_at"][:19] if t["last_used_at"] else "never"
        lines.append(f"{t['name']:<24} {t['scope']:<5} created {t['created_at'][:19]}  last used {used:<19}  {state}")
    lines.append(f"{result['count']} token{'s' if result['count'] != 1 else ''}")
    return "\n".join(lines)


def text_revoke(result: dict) -> str:
    return f"revoked token {result['name']!r}"
