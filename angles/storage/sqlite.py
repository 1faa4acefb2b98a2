"""The embedded default: one SQLite file in WAL mode."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from angles.engines.decision_model import COLUMNS, JSON_COLUMNS, unstorable_field, utc_now
from angles.errors import DatabaseError
from angles.storage.base import Storage
from angles.storage.rows import decode, decode_activity, prepare

# SQLite's words for a file whose pages are not what they should be.
DAMAGE = re.compile(r"malformed|not a database|corrupt", re.IGNORECASE)
# Virtual-machine steps between two looks at the clock during quick_check.
PROGRESS_STEPS = 10_000


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
        elif self.path.is_file() and self.path.stat().st_size == 0:
            # This class never leaves an empty file (opening writes the header at once): something truncated
            # the vault. A fresh schema over it would hide that and back up an empty vault.
            raise DatabaseError(
                f"the SQLite database {self.path} is an empty file (0 bytes), not a database: move it away, "
                "then restore with restore_from_github.py --restore-decisions (or run run_migration.py for a new vault)"
            )
        try:
            self.conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=30)
            self.conn.row_factory = sqlite3.Row
            if target != ":memory:":
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise DatabaseError(self._reason(exc, f"cannot open SQLite database {self.path}")) from exc

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def _reason(self, exc: sqlite3.Error, context: str) -> str:
        if isinstance(exc, sqlite3.DatabaseError) and DAMAGE.search(str(exc)):
            return (
                f"the SQLite database {self.path} is damaged ({exc}): move it away (with its -wal file) and "
                "restore with restore_from_github.py --restore-decisions"
            )
        return f"{context}: {exc}"

    @contextmanager
    def _guard(self):
        with self._lock:
            try:
                yield self.conn
            except sqlite3.Error as exc:
                raise DatabaseError(self._reason(exc, f"SQLite error on {self.path.name}")) from exc

    def check_integrity(self, budget_s: float | None = None) -> str | None:
        deadline = None if budget_s is None else time.monotonic() + budget_s

        def over_budget() -> int:
            return int(time.monotonic() > deadline)

        with self._lock:
            if deadline is not None:
                self.conn.set_progress_handler(over_budget, PROGRESS_STEPS)
            try:
                rows = self.conn.execute("PRAGMA quick_check(1)").fetchall()
            except sqlite3.OperationalError as exc:
                if deadline is not None and "interrupt" in str(exc):
                    raise TimeoutError(f"quick_check needs more than {budget_s:g} s") from None
                return str(exc)
            except sqlite3.DatabaseError as exc:
                # Damage bad enough that the check cannot even start reading.
                return str(exc)
            finally:
                self.conn.set_progress_handler(None, 0)
        finding = rows[0][0] if rows else "ok"
        return None if finding == "ok" else " ".join(finding.split())

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
        if atomic:
            with self._transaction() as conn:
                return self._upsert_in(conn, rows, batch)
        count = 0
        pending: list[dict] = []
        for row in rows:
            pending.append(prepare(row, json_as_text=True, bool_as_int=True))
            if len(pending) >= batch:
                count += self._commit_batch(pending)
        return count + self._commit_batch(pending)

    def _commit_batch(self, pending: list[dict]) -> int:
        """Write and commit one batch of prepared rows, then empty the list; how many were written."""
        if not pending:
            return 0
        with self._transaction() as conn:
            self._write_batch(conn, pending)
        count = len(pending)
        pending.clear()
        return count

    def _upsert_in(self, conn, rows: Iterable[dict], batch: int) -> int:
        """Upsert inside the caller's transaction."""
        count = 0
        pending: list[dict] = []
        for row in rows:
            pending.append(prepare(row, json_as_text=True, bool_as_int=True))
            if len(pending) >= batch:
                self._write_batch(conn, pending)
                count += len(pending)
                pending.clear()
        if pending:
            self._write_batch(conn, pending)
            count += len(pending)
        return count

    def upsert_and_prune(self, rows: Iterable[dict], prune_ids: list[str], batch: int = 500) -> tuple[int, int]:
        with self._transaction() as conn:
            written = self._upsert_in(conn, rows, batch)
            self._delete_in(conn, prune_ids)
        return written, len(prune_ids)

    @staticmethod
    def _delete_in(conn, ids: list[str]) -> None:
        # SQLite checks a foreign key after each row's DELETE statement: links among the deleted rows go first.
        keys = [(i,) for i in ids]
        conn.executemany(
            "UPDATE decision_vault SET superseded_by = NULL WHERE id = ? AND superseded_by IS NOT NULL", keys
        )
        conn.executemany("DELETE FROM decision_vault WHERE id=?", keys)

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

    def ids_with_nul_text(self) -> list[str]:
        text = [c for c in COLUMNS if c not in JSON_COLUMNS]
        # Plain text holds the NUL byte itself; JSON text holds it escaped (or a lookalike, ruled out below).
        raw = " OR ".join(f"instr(CAST({c} AS BLOB), x'00') > 0" for c in text)
        escaped = " OR ".join(f"instr({c}, '\\u0000') > 0" for c in JSON_COLUMNS)
        with self._guard() as conn:
            if not self._table_exists(conn, "decision_vault"):
                return []
            rows = conn.execute(f"SELECT * FROM decision_vault WHERE {raw} OR {escaped} ORDER BY id").fetchall()
        return [row["id"] for row in rows if unstorable_field(decode(dict(row))) is not None]

    def delete_decisions(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        with self._transaction() as conn:
            self._delete_in(conn, ids)
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
