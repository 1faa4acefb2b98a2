"""The embedded default: one SQLite file in WAL mode."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from angles.engines.decision_model import COLUMNS, utc_now
from angles.errors import DatabaseError
from angles.storage.base import Storage
from angles.storage.rows import decode, decode_activity, decode_token, prepare


class SQLiteStorage(Storage):
    kind = "sqlite"
    dialect = "sqlite"

    def __init__(self, path: Path, *, create: bool = True):
        self.path = Path(path)
        self._lock = threading.RLock()
        target = str(self.path)
        if not self.path.exists():
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            else:
                target = ":memory:"
        try:
            self.conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=30)
            self.conn.row_factory = sqlite3.Row
            if target != ":memory:":
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open SQLite database {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    @contextmanager
    def _guard(self):
        with self._lock:
            try:
                yield self.conn
            except sqlite3.Error as exc:
                raise DatabaseError(f"SQLite error on {self.path.name}: {exc}") from exc

    @contextmanager
    def _transaction(self):
        with self._guard() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def ping(self) -> None:
        with self._guard() as conn:
            conn.execute("SELECT 1").fetchone()

    def _table_exists(self, conn, name: str) -> bool:
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        return row is not None

    def applied_migrations(self) -> list[dict]:
        with self._guard() as conn:
            if not self._table_exists(conn, "schema_migrations"):
                return []
            rows = conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
            return [dict(r) for r in rows]

    def apply_migration(self, version: int, name: str, checksum: str, sql: str) -> None:
        with self._guard() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            record = (
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES "
                f"({int(version)}, '{name.replace(chr(39), '')}', '{checksum}', '{utc_now()}');"
            )
            try:
                conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;{record}\nCOMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def upsert_decisions(self, rows: Iterable[dict], *, atomic: bool = False, batch: int = 500) -> int:
        count = 0
        pending: list[dict] = []

        def flush():
            nonlocal count
            if not pending:
                return
            if atomic:
                self._write_batch(self.conn, pending)
            else:
                with self._transaction() as conn:
                    self._write_batch(conn, pending)
            count += len(pending)
            pending.clear()

        if atomic:
            with self._transaction():
                for row in rows:
                    pending.append(prepare(row, json_as_text=True, bool_as_int=True))
                    if len(pending) >= batch:
                        flush()
                flush()
        else:
            for row in rows:
                pending.append(prepare(row, json_as_text=True, bool_as_int=True))
                if len(pending) >= batch:
                    flush()
            flush()
        return count

    @staticmethod
    def _write_batch(conn, rows: list[dict]) -> None:
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(row), []).append(row)
        for columns, group in groups.items():
            updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in ("id", "created_at"))
            sql = (
                f"INSERT INTO decision_vault ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                f" ON CONFLICT(id) DO UPDATE SET {updates}"
            )
            conn.executemany(sql, [tuple(r[c] for c in columns) for r in group])

    def update_decision(self, decision_id: str, fields: dict) -> None:
        if not fields:
            return
        prepared = prepare({"id": decision_id, **fields}, json_as_text=True, bool_as_int=True)
        columns = [c for c in fields if c in COLUMNS and c != "id"]
        if "updated_at" not in fields:
            columns.append("updated_at")
        assignments = ", ".join(f"{c}=?" for c in columns)
        with self._transaction() as conn:
            conn.execute(
                f"UPDATE decision_vault SET {assignments} WHERE id=?",
                [prepared[c] for c in columns] + [decision_id],
            )

    def get_decision(self, decision_id: str) -> dict | None:
        with self._guard() as conn:
            if not self._table_exists(conn, "decision_vault"):
                return None
            row = conn.execute("SELECT * FROM decision_vault WHERE id=?", (decision_id,)).fetchone()
            return decode(dict(row)) if row else None

    def find_decision_by_page(self, page_id: str) -> dict | None:
        with self._guard() as conn:
            row = conn.execute("SELECT * FROM decision_vault WHERE notion_page_id=?", (page_id,)).fetchone()
            return decode(dict(row)) if row else None

    def iter_decisions(self, *, since=None, type=None, priority=None, active=None, batch=1000) -> Iterator[dict]:
        clauses, params = [], []
        if since:
            clauses.append("updated_at >= ?")
            params.append(since)
        if type:
            clauses.append("type = ?")
            params.append(type)
        if priority:
            clauses.append("priority = ?")
            params.append(priority)
        if active is not None:
            clauses.append("active = ?")
            params.append(int(active))
        with self._guard() as conn:
            if not self._table_exists(conn, "decision_vault"):
                return
        last = ""
        while True:
            where = " AND ".join(["id > ?", *clauses])
            with self._guard() as conn:
                # Plain tuples zipped with the column names: much cheaper per row than sqlite3.Row to dict.
                cur = conn.cursor()
                cur.row_factory = None
                rows = cur.execute(
                    f"SELECT * FROM decision_vault WHERE {where} ORDER BY id LIMIT ?", [last, *params, batch]
                ).fetchall()
                names = [d[0] for d in cur.description]
            if not rows:
                return
            for row in rows:
                yield decode(dict(zip(names, row, strict=True)))
            last = rows[-1][names.index("id")]

    def count_decisions(self) -> int:
        with self._guard() as conn:
            if not self._table_exists(conn, "decision_vault"):
                return 0
            return conn.execute("SELECT count(*) FROM decision_vault").fetchone()[0]

    def delete_decisions(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        with self._transaction() as conn:
            conn.executemany("DELETE FROM decision_vault WHERE id=?", [(i,) for i in ids])
        return len(ids)

    def record_activity(
        self,
        agent_name,
        action,
        status="completed",
        details=None,
        *,
        started_at=None,
        finished_at=None,
        duration_s=None,
        host=None,
    ) -> int:
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO agent_activity (agent_name, action, details, status, created_at, started_at,"
                " finished_at, duration_s, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (agent_name, action, details, status, utc_now(), started_at, finished_at, duration_s, host),
            )
            return cur.lastrowid

    def iter_activity(self, *, since=None, agent_name=None, action=None) -> Iterator[dict]:
        clauses, params = ["1=1"], []
        for column, value in (("created_at >= ?", since), ("agent_name = ?", agent_name), ("action = ?", action)):
            if value is not None:
                clauses.append(column)
                params.append(value)
        with self._guard() as conn:
            if not self._table_exists(conn, "agent_activity"):
                return iter(())
            rows = conn.execute(f"SELECT * FROM agent_activity WHERE {' AND '.join(clauses)} ORDER BY id", params)
            return iter([decode_activity(dict(r)) for r in rows.fetchall()])

    def get_state(self, key: str) -> str | None:
        with self._guard() as conn:
            if not self._table_exists(conn, "sync_state"):
                return None
            row = conn.execute("SELECT value FROM sync_state WHERE key=?", (key,)).fetchone()
            return row[0] if row else None

    def set_state(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO sync_state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
                (key, value, utc_now()),
            )

    def claim_slot(self, job: str, slot: str, host: str) -> bool:
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO job_slots (job, slot, host, claimed_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (job, slot, host, utc_now()),
            )
            return cur.rowcount == 1

    def prune_slots(self, before: str) -> int:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM job_slots WHERE slot < ?", (before,)).rowcount

    def add_token(self, name: str, scope: str, token_hash: str) -> bool:
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO mcp_tokens (name, scope, token_hash, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET scope=excluded.scope, token_hash=excluded.token_hash,"
                " created_at=excluded.created_at, last_used_at=NULL, revoked_at=NULL"
                " WHERE mcp_tokens.revoked_at IS NOT NULL",
                (name, scope, token_hash, utc_now()),
            )
            return cur.rowcount == 1

    def find_token(self, token_hash: str) -> dict | None:
        with self._guard() as conn:
            row = conn.execute(
                "SELECT name, scope, created_at, last_used_at, revoked_at FROM mcp_tokens WHERE token_hash=?",
                (token_hash,),
            ).fetchone()
            return decode_token(dict(row)) if row else None

    def list_tokens(self) -> list[dict]:
        with self._guard() as conn:
            if not self._table_exists(conn, "mcp_tokens"):
                return []
            rows = conn.execute(
                "SELECT name, scope, created_at, last_used_at, revoked_at FROM mcp_tokens ORDER BY name"
            ).fetchall()
            return [decode_token(dict(r)) for r in rows]

    def revoke_token(self, name: str) -> bool:
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE mcp_tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL", (utc_now(), name)
            )
            return cur.rowcount == 1

    def mark_token_used(self, name: str, when: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE mcp_tokens SET last_used_at=? WHERE name=?", (when, name))

    def count_token_write(self, name: str, window_start: str) -> int:
        with self._transaction() as conn:
            conn.execute("DELETE FROM mcp_write_counts WHERE token_name=? AND window_start<?", (name, window_start))
            return conn.execute(
                "INSERT INTO mcp_write_counts (token_name, window_start, writes) VALUES (?, ?, 1)"
                " ON CONFLICT(token_name, window_start) DO UPDATE SET writes=writes+1 RETURNING writes",
                (name, window_start),
            ).fetchone()[0]
