"""The one storage interface every backend implements."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

from angles.engines.decision_model import COLUMNS
from angles.engines.search_query import Query

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


class Storage(ABC):
    """Decisions, agent activity, sync state and job slots, whatever holds them."""

    kind: str = ""
    dialect: str = ""  # which migrations/<dialect>/ folder applies
    # Whether upsert_and_prune and restore_lines write in one transaction (a failure midway leaves nothing).
    one_transaction: bool = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def ping(self) -> None:
        """Raise DatabaseError when the database does not answer."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, with no secret in it."""

    # schema

    def check_integrity(self, budget_s: float | None = None) -> str | None:
        """None when the database's own consistency check finds nothing, else its first finding.

        TimeoutError when the check needs longer than `budget_s`. Server databases check their pages
        themselves, so only the embedded file has a check here.
        """
        return None

    @abstractmethod
    def applied_migrations(self) -> list[dict]:
        """Rows of schema_migrations (version, name, checksum, applied_at); [] when the table is absent."""

    @abstractmethod
    def apply_migration(self, version: int, name: str, checksum: str, sql: str) -> None:
        """Run one migration and record it, in one transaction."""

    def schema_version(self) -> int | None:
        applied = self.applied_migrations()
        return max((m["version"] for m in applied), default=None)

    # decisions

    @abstractmethod
    def upsert_decisions(self, rows: Iterable[dict], *, atomic: bool = False, source: str = "system") -> int:
        """Insert or replace validated decisions by id, in batches (one transaction when atomic).

        A row whose content (HISTORY_FIELDS) changes leaves its previous version in decision_history, marked
        with `source`, in the same transaction.
        """

    def add_decision(self, row: dict, *, source: str = "system") -> dict | None:
        """Store one validated decision and return it as stored (defaults filled in); None if it vanished."""
        self.upsert_decisions([row], source=source)
        return self.get_decision(row["id"])

    @abstractmethod
    def update_decision(
        self, decision_id: str, fields: dict, *, source: str = "system", reason: str | None = None
    ) -> None:
        """Change some columns of one decision, committed at once; a content change leaves a history row."""

    @abstractmethod
    def get_decision(self, decision_id: str) -> dict | None: ...

    @abstractmethod
    def find_decision_by_page(self, page_id: str) -> dict | None: ...

    @abstractmethod
    def iter_decisions(
        self,
        *,
        since: str | None = None,
        type: str | None = None,
        priority: str | None = None,
        active: bool | None = None,
        batch: int = 1000,
    ) -> Iterator[dict]:
        """Stream decisions in id order without holding them all; `since` filters on updated_at."""

    def dump_decisions(self, batch_bytes: int = 1 << 20, *, scan=None) -> Iterator[list[bytes]]:
        """Every decision as one line of JSON (COLUMNS order, UTF-8, no newline), in id order, in batches.

        For read-only bulk export: the caller writes nothing through this storage until the dump is consumed.
        `scan(block, absent)` sees every line once, in newline-ended blocks, before they are yielded; `absent`
        names characters found in the block only in its keys and fixed-form values (ids, dates, timestamps).
        """
        lines: list[bytes] = []
        size = 0
        for row in self.iter_decisions():
            line = json.dumps({c: row.get(c) for c in COLUMNS}, ensure_ascii=False, default=str).encode()
            lines.append(line)
            size += len(line)
            if size >= batch_bytes:
                if scan:
                    scan(b"\n".join(lines) + b"\n", b"")
                yield lines
                lines, size = [], 0
        if lines:
            if scan:
                scan(b"\n".join(lines) + b"\n", b"")
            yield lines

    @abstractmethod
    def count_decisions(self) -> int: ...

    def ids_with_nul_text(self) -> list[str]:
        """Ids of decisions holding a NUL character, which PostgreSQL cannot store and validate() refuses.

        Only SQLite ever stored one (before validation refused it); the other backends hold none.
        """
        return []

    @abstractmethod
    def delete_decisions(self, ids: Iterable[str]) -> int:
        """Hard-delete rows by id (restore --prune only), links among them included."""

    def upsert_and_prune(self, rows: Iterable[dict], prune_ids: list[str], source: str = "restore") -> tuple[int, int]:
        """Upsert rows, then delete prune_ids: one transaction on the SQL backends; (written, deleted).

        Over Supabase REST (no transaction across requests) the upsert and the delete are separate steps.
        """
        written = self.upsert_decisions(rows, atomic=True, source=source)
        return written, self.delete_decisions(prune_ids) if prune_ids else 0

    def restore_lines(self, rows: Iterable[tuple[bytes, tuple[bytes, ...]] | dict], *, source: str = "restore") -> int:
        """Write a backup's decisions into an empty decisions table, in one transaction; returns the rows written.

        Each row is a parsed decision or a plain backup line as (line, its COPY cells), see
        backup_format.plain_fields, in the order to write them (link targets first). A backend may copy the
        cells as they are; this default parses the line and upserts, as every other restore does.
        """
        parsed = (json.loads(row[0]) if isinstance(row, tuple) else row for row in rows)
        return self.upsert_decisions(parsed, atomic=True, source=source)

    # activity

    @abstractmethod
    def record_activity(
        self,
        agent_name: str,
        action: str,
        status: str = "completed",
        details: str | None = None,
        *,
        started_at: str | None = None,
        finished_at: str | None = None,
        duration_s: float | None = None,
        host: str | None = None,
        durable: bool = True,
    ) -> int:
        """Append one activity row; its id.

        durable=False: bookkeeping a database crash may lose (never a decision), so PostgreSQL commits it without
        waiting for the disk; SQLite (WAL, synchronous=NORMAL) and Supabase REST write it alike either way.
        """

    @abstractmethod
    def iter_activity(
        self, *, since: str | None = None, agent_name: str | None = None, action: str | None = None
    ) -> Iterator[dict]:
        """Activity rows in id order, optionally since a created_at timestamp."""

    # small key-value state (last pull time, last backup, ...)

    @abstractmethod
    def get_state(self, key: str) -> str | None: ...

    @abstractmethod
    def set_state(self, key: str, value: str) -> None: ...

    # scheduler

    @abstractmethod
    def claim_slot(self, job: str, slot: str, host: str) -> bool:
        """Claim one scheduled run; False when another host (or an earlier run) already has it."""

    @abstractmethod
    def prune_slots(self, before: str) -> int:
        """Forget claims of slots older than `before`; returns how many went."""

    # bearer tokens of the assistants' HTTP door (tools/mcp_server.py --http)

    @abstractmethod
    def add_token(self, name: str, scope: str, token_hash: str) -> bool:
        """Store a token by the hash of its secret; a revoked token of that name is replaced.

        False, and nothing stored, when an unrevoked token already has the name.
        """

    @abstractmethod
    def find_token(self, token_hash: str) -> dict | None:
        """The token with this hash (name, scope, created_at, last_used_at, revoked_at), revoked or not."""

    @abstractmethod
    def list_tokens(self) -> list[dict]:
        """Every token, revoked ones too, by name, without the hash."""

    @abstractmethod
    def revoke_token(self, name: str) -> bool:
        """Revoke the named token; False when no unrevoked token has that name."""

    @abstractmethod
    def mark_token_used(self, name: str, when: str) -> None:
        """Note when the token was last used (bookkeeping: committed like record_activity(durable=False))."""

    @abstractmethod
    def count_token_write(self, name: str, window_start: str) -> int:
        """Count one write in the token's window and forget its earlier windows; returns the window's count so far.

        Atomic: concurrent writers through any number of servers each see a different count. Earlier windows
        are forgotten by the window's first write only, not by every write.
        """

    # the searchable vault: full-text search, history, links

    @abstractmethod
    def search_decisions(
        self,
        query: Query,
        *,
        type: str | None = None,
        priority: str | None = None,
        tag: str | None = None,
        since: str | None = None,
        until: str | None = None,
        include_inactive: bool = False,
        limit: int = 20,
    ) -> list[dict]:
        """Decisions matching a parsed query, best first and newer first on ties.

        Each hit is a decision dict plus `score` (higher is better) and `snippet` (a short extract, matched words
        between search_query.MARK_START and MARK_END). since/until compare the decision's date.
        """

    @abstractmethod
    def same_text_candidates(self, words: list[str], text: str, limit: int = 20) -> list[dict]:
        """Live decisions holding these words as one phrase (with no words: exactly this text), nearest length first."""

    @abstractmethod
    def similar_candidates(self, words: list[str], limit: int = 20) -> list[dict]:
        """Decisions sharing the most telling (rarest) of these words, best first."""

    @abstractmethod
    def refresh_search_statistics(self) -> None:
        """Count again how many decisions hold each word (what the duplicate and similarity lookups rely on)."""

    @abstractmethod
    def ids_between(self, low: str, high: str, limit: int) -> list[str]:
        """Decision ids from low to high inclusive (canonical UUID text), in order, at most `limit`."""

    @abstractmethod
    def superseded_into(self, decision_id: str) -> list[dict]:
        """Decisions whose superseded_by names this one."""

    @abstractmethod
    def history_of(self, decision_id: str) -> list[dict]:
        """The stored earlier versions of one decision (HISTORY_COLUMNS rows), oldest first."""

    @abstractmethod
    def iter_history(self, batch: int = 1000) -> Iterator[dict]:
        """Every history row in id order."""

    @abstractmethod
    def upsert_history(self, rows: Iterable[dict]) -> int:
        """Store history rows that are not there yet (by id); rows already present are left as they are."""

    @abstractmethod
    def links_of(self, decision_id: str) -> list[dict]:
        """Links from or to one decision (LINK_COLUMNS rows)."""

    @abstractmethod
    def add_link(self, row: dict) -> bool:
        """Store one link; False when the same link (same id) is already there."""

    @abstractmethod
    def remove_links(self, from_id: str, to_id: str, kind: str | None = None) -> int:
        """Delete the links from one decision to another (of one kind, or all); returns how many went."""

    @abstractmethod
    def iter_links(self, batch: int = 1000) -> Iterator[dict]:
        """Every link in id order."""

    @abstractmethod
    def upsert_links(self, rows: Iterable[dict]) -> int:
        """Store links that are not there yet (by id)."""
