"""The embedded default: one SQLite file in WAL mode."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from angles.engines.decision_model import (
    COLUMNS,
    HISTORY_COLUMNS,
    HISTORY_FIELDS,
    JSON_COLUMNS,
    LINK_COLUMNS,
    history_entry,
    unstorable_field,
    utc_now,
)
from angles.engines.search_query import MARK_END, MARK_START, STOP_WORDS, Query, any_fts5, to_fts5
from angles.errors import DatabaseError
from angles.storage.base import Storage
from angles.storage.rows import canonical, decode, decode_activity, decode_history, decode_link, decode_token, prepare

# bm25 weights of the indexed columns: decision text, comment, tags, AI summary.
BM25 = "bm25(decision_search, 4.0, 1.0, 2.0, 1.0)"
LIVE = "d.active = 1 AND d.superseded_by IS NULL AND d.deleted_at IS NULL"
SNIPPET_TOKENS = 16
# How many of a text's rarest words pick the candidates for similarity.
RARE_WORDS = 4
# A query matching more decisions than this ranks only the most recently stored this many of them: reading
# each match's rank costs about as much as the rest of the search, and a person looks at the first 20.
RANK_POOL = 300
# Decisions sharing a text's rarest words that are ranked for similarity (the most recent ones).
SIMILAR_POOL = 100
# A snippet is cut from a text's first this many characters: a long memo's opening is what a hit shows.
SNIPPET_CHARS = 4000
# A word held by more than this share of decisions says little about a text: similarity leaves it out
# (unless the text has no rarer word), so the lookup never reads the long match list of a common word.
RARE_SHARE = 0.01
# How many of a text's distinct words are looked up to find its rarest.
PROBE_WORDS = 100
# How many of a text's rarest words find the decisions that may hold the very same text.
DUPLICATE_WORDS = 3
TOKENIZER = "porter unicode61 remove_diacritics 2"

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
        self._probe: sqlite3.Connection | None = None
        self._counts: dict[str, int] = {}
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
            if self._probe is not None:
                self._probe.close()

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

    def upsert_decisions(
        self, rows: Iterable[dict], *, atomic: bool = False, batch: int = 500, source: str = "system"
    ) -> int:
        if atomic:
            with self._transaction() as conn:
                return self._upsert_in(conn, rows, batch, source)
        count = 0
        pending: list[dict] = []
        for row in rows:
            pending.append(prepare(row, json_as_text=True, bool_as_int=True))
            if len(pending) >= batch:
                count += self._commit_batch(pending, source)
        return count + self._commit_batch(pending, source)

    def _commit_batch(self, pending: list[dict], source: str) -> int:
        """Write and commit one batch of prepared rows, then empty the list; how many were written."""
        if not pending:
            return 0
        with self._transaction() as conn:
            self._write_batch(conn, pending, source)
        count = len(pending)
        pending.clear()
        return count

    def _upsert_in(self, conn, rows: Iterable[dict], batch: int, source: str) -> int:
        """Upsert inside the caller's transaction."""
        count = 0
        pending: list[dict] = []
        for row in rows:
            pending.append(prepare(row, json_as_text=True, bool_as_int=True))
            if len(pending) >= batch:
                self._write_batch(conn, pending, source)
                count += len(pending)
                pending.clear()
        if pending:
            self._write_batch(conn, pending, source)
            count += len(pending)
        return count

    def upsert_and_prune(
        self, rows: Iterable[dict], prune_ids: list[str], batch: int = 500, source: str = "restore"
    ) -> tuple[int, int]:
        with self._transaction() as conn:
            written = self._upsert_in(conn, rows, batch, source)
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

    def _write_batch(self, conn, rows: list[dict], source: str) -> None:
        self._keep_history(conn, rows, source)
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

    def _keep_history(self, conn, rows: list[dict], source: str, reason: str | None = None) -> None:
        """Store the stored version of every row about to change its content (rows in prepare()'s form)."""
        if not any(f in rows[0] for f in HISTORY_FIELDS) or not self._table_exists(conn, "decision_history"):
            return
        # A row without an id is new: it has no stored version.
        ids = [r["id"] for r in rows if r.get("id") is not None]
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        stored = {
            r["id"]: decode(dict(r)) for r in conn.execute(f"SELECT * FROM decision_vault WHERE id IN ({marks})", ids)
        }
        entries = []
        for row in rows:
            old = stored.get(row.get("id"))
            if old is not None:
                new = canonical(decode({**old, **{k: v for k, v in row.items() if k in HISTORY_FIELDS}}))
                entry = history_entry(old, {f: new[f] for f in HISTORY_FIELDS if f in row}, source, reason)
                if entry:
                    entries.append(entry)
        if entries:
            self._insert_history(conn, entries, ignore=False)

    @staticmethod
    def _insert_history(conn, entries: list[dict], *, ignore: bool) -> int:
        sql = (
            f"INSERT INTO decision_history ({', '.join(HISTORY_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(HISTORY_COLUMNS))})" + (" ON CONFLICT(id) DO NOTHING" if ignore else "")
        )
        values = []
        for e in entries:
            e = {**e, "changed": _json(e["changed"]), "previous": _json(e["previous"])}
            values.append(tuple(e.get(c) for c in HISTORY_COLUMNS))
        before = conn.total_changes
        conn.executemany(sql, values)
        return conn.total_changes - before

    def update_decision(
        self, decision_id: str, fields: dict, *, source: str = "system", reason: str | None = None
    ) -> None:
        if not fields:
            return
        prepared = prepare({"id": decision_id, **fields}, json_as_text=True, bool_as_int=True)
        columns = [c for c in fields if c in COLUMNS and c != "id"]
        if "updated_at" not in fields:
            columns.append("updated_at")
        assignments = ", ".join(f"{c}=?" for c in columns)
        with self._transaction() as conn:
            self._keep_history(conn, [{c: prepared[c] for c in ("id", *columns)}], source, reason)
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
        durable=True,
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
            writes = conn.execute(
                "INSERT INTO mcp_write_counts (token_name, window_start, writes) VALUES (?, ?, 1)"
                " ON CONFLICT(token_name, window_start) DO UPDATE SET writes=writes+1 RETURNING writes",
                (name, window_start),
            ).fetchone()[0]
            if writes == 1:
                conn.execute("DELETE FROM mcp_write_counts WHERE token_name=? AND window_start<?", (name, window_start))
            return writes

    # the searchable vault

    def search_decisions(
        self,
        query: Query,
        *,
        type=None,
        priority=None,
        tag=None,
        since=None,
        until=None,
        include_inactive=False,
        limit=20,
    ) -> list[dict]:
        clauses, params = ["decision_search MATCH ?"], [to_fts5(query)]
        for clause, value in (
            ("d.type = ?", type),
            ("d.priority = ?", priority),
            ("d.date >= ?", since),
            ("d.date <= ?", until),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if tag is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(d.tags) WHERE json_each.value = ?)")
            params.append(tag)
        if not include_inactive:
            clauses.append(LIVE)
        with self._guard() as conn:
            # The most recently stored matches, newest first, straight from the index (all of them unless the
            # query is very broad); ranking them in Python avoids sorting every match of a common word.
            pool = conn.execute(
                f"SELECT decision_search.rowid AS rid, {BM25} AS rank, d.date, d.created_at FROM decision_search"
                f" JOIN decision_vault d ON d.rowid = decision_search.rowid WHERE {' AND '.join(clauses)}"
                f" ORDER BY decision_search.rowid DESC LIMIT {RANK_POOL}",
                params,
            ).fetchall()
            if not pool:
                return []
            pool.sort(key=lambda r: r["created_at"] or "", reverse=True)
            pool.sort(key=lambda r: r["date"], reverse=True)
            ranked = sorted(pool, key=lambda r: r["rank"])[: int(limit)]
            marks = ", ".join("?" * len(ranked))
            rows = conn.execute(
                f"SELECT rowid AS rid, * FROM decision_vault WHERE rowid IN ({marks})", [r["rid"] for r in ranked]
            ).fetchall()
        found = {r["rid"]: decode(dict(r)) for r in rows}
        hits = [{**found[r["rid"]], "score": round(-r["rank"], 6)} for r in ranked if r["rid"] in found]
        for hit, snippet in zip(hits, snippets_in_memory(hits, params[0]), strict=True):
            hit["snippet"] = snippet
        return hits

    def same_text_candidates(self, words: list[str], text: str, limit: int = 20) -> list[dict]:
        with self._guard() as conn:
            if not words:
                rows = conn.execute(
                    f"SELECT d.* FROM decision_vault d WHERE d.decision = ? AND {LIVE} LIMIT ?", (text, limit)
                ).fetchall()
                return [decode(dict(r)) for r in rows]
            # The same text holds every word; its rarest few find it through short match lists.
            # Any of its words narrow the search for the same text; a long memo's first distinct words suffice.
            distinct = list(dict.fromkeys(w.casefold() for w in words))[:PROBE_WORDS]
            rare = self._rarest(conn, distinct)[:DUPLICATE_WORDS]
            rows = conn.execute(
                "SELECT d.* FROM decision_search JOIN decision_vault d ON d.rowid = decision_search.rowid"
                f" WHERE decision_search MATCH ? AND {LIVE} ORDER BY abs(length(d.decision) - ?) LIMIT ?",
                (" AND ".join(f'"{w}"' for w in rare), len(text), limit),
            ).fetchall()
        return [decode(dict(r)) for r in rows]

    def _rarest(self, conn, words: list[str]) -> list[str]:
        """The words, rarest first by decision_term_stats (a word it does not know counts as rarest)."""
        # Adding a decision asks twice about the same words (duplicate check, then similar decisions): the
        # counts of the last text asked about are kept, so the second asks only about words the first did not.
        counts = {w: self._counts[w] for w in words if w in self._counts}
        missing = [w for w in words if w not in counts]
        stems = self._stems(missing) if missing else {}
        if stems:
            marks = ", ".join("?" * len(stems))
            docs = dict(
                conn.execute(
                    f"SELECT term, docs FROM decision_term_stats WHERE term IN ({marks})", list(stems.values())
                )
            )
            counts.update({w: docs.get(stem, 0) for w, stem in stems.items()})
        counts.update({w: 0 for w in missing if w not in stems})
        self._counts = counts
        return sorted(words, key=lambda w: (counts[w], -len(w)))

    def _stems(self, words: list[str]) -> dict[str, str]:
        """Each word's index term, through the index's own tokenizer (a table in a private in-memory database)."""
        if self._probe is None:
            self._probe = sqlite3.connect(":memory:", check_same_thread=False)
            self._probe.execute(f"CREATE VIRTUAL TABLE probe USING fts5(t, tokenize='{TOKENIZER}')")
            self._probe.execute("CREATE VIRTUAL TABLE probe_terms USING fts5vocab(probe, instance)")
        self._probe.execute("DELETE FROM probe")
        self._probe.executemany("INSERT INTO probe (rowid, t) VALUES (?, ?)", list(enumerate(words, 1)))
        terms = dict(self._probe.execute("SELECT doc, term FROM probe_terms"))
        return {w: terms[i] for i, w in enumerate(words, 1) if i in terms}

    def similar_candidates(self, words: list[str], limit: int = 20) -> list[dict]:
        unique = list(dict.fromkeys(w.casefold() for w in words if w.casefold() not in STOP_WORDS))
        if not unique:
            return []
        with self._guard() as conn:
            # The rarest words say most about a text and keep the match list short on a large vault.
            ranked = self._rarest(conn, unique[:PROBE_WORDS])
            # A common word would make bm25 count its whole match list: only rare ones pick the candidates.
            most = RARE_SHARE * (conn.execute("SELECT max(rowid) FROM decision_vault").fetchone()[0] or 0)
            rare = [w for w in ranked[:RARE_WORDS] if self._counts[w] <= most] or ranked[:1]
            # As for a search: only the most recent matches are ranked, so a text of common words costs little.
            pool = conn.execute(
                f"SELECT rowid, {BM25} FROM decision_search WHERE decision_search MATCH ?"
                f" ORDER BY rowid DESC LIMIT {SIMILAR_POOL}",
                (any_fts5(rare),),
            ).fetchall()
            best = [rowid for rowid, _ in sorted(pool, key=lambda r: r[1])[:limit]]
            marks = ", ".join("?" * len(best))
            rows = {
                r["rowid"]: decode(dict(r))
                for r in conn.execute(f"SELECT rowid, * FROM decision_vault WHERE rowid IN ({marks})", best)
            }
        return [rows[rowid] for rowid in best if rowid in rows]

    def refresh_search_statistics(self) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM decision_term_stats")
            conn.execute("INSERT INTO decision_term_stats SELECT term, doc FROM decision_search_terms")
        self._counts = {}

    def ids_between(self, low: str, high: str, limit: int) -> list[str]:
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT id FROM decision_vault WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?", (low, high, limit)
            )
            return [r[0] for r in rows]

    def superseded_into(self, decision_id: str) -> list[dict]:
        with self._guard() as conn:
            rows = conn.execute("SELECT * FROM decision_vault WHERE superseded_by = ? ORDER BY id", (decision_id,))
            return [decode(dict(r)) for r in rows.fetchall()]

    def history_of(self, decision_id: str) -> list[dict]:
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT * FROM decision_history WHERE decision_id = ? ORDER BY changed_at, rowid", (decision_id,)
            )
            return [decode_history(dict(r)) for r in rows.fetchall()]

    def _pages(self, table: str, decoder, batch: int) -> Iterator[dict]:
        last = ""
        while True:
            with self._guard() as conn:
                if not self._table_exists(conn, table):
                    return
                rows = conn.execute(f"SELECT * FROM {table} WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield decoder(dict(row))
            last = rows[-1]["id"]

    def iter_history(self, batch: int = 1000) -> Iterator[dict]:
        return self._pages("decision_history", decode_history, batch)

    def upsert_history(self, rows: Iterable[dict]) -> int:
        count = 0
        chunk: list[dict] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= 500:
                with self._transaction() as conn:
                    count += self._insert_history(conn, chunk, ignore=True)
                chunk = []
        if chunk:
            with self._transaction() as conn:
                count += self._insert_history(conn, chunk, ignore=True)
        return count

    def links_of(self, decision_id: str) -> list[dict]:
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT * FROM decision_links WHERE from_id = ? UNION ALL"
                " SELECT * FROM decision_links WHERE to_id = ? AND from_id <> ? ORDER BY created_at, id",
                (decision_id, decision_id, decision_id),
            )
            return [decode_link(dict(r)) for r in rows.fetchall()]

    def _insert_links(self, conn, rows: list[dict]) -> int:
        before = conn.total_changes
        # A link to a decision that is not (or no longer) stored is skipped, as a restore may bring one.
        conn.executemany(
            f"INSERT INTO decision_links ({', '.join(LINK_COLUMNS)}) SELECT {', '.join('?' * len(LINK_COLUMNS))}"
            " WHERE EXISTS (SELECT 1 FROM decision_vault WHERE id = ?)"
            " AND EXISTS (SELECT 1 FROM decision_vault WHERE id = ?) ON CONFLICT DO NOTHING",
            [(*(r.get(c) for c in LINK_COLUMNS), r["from_id"], r["to_id"]) for r in rows],
        )
        return conn.total_changes - before

    def add_link(self, row: dict) -> bool:
        with self._transaction() as conn:
            return self._insert_links(conn, [row]) == 1

    def remove_links(self, from_id: str, to_id: str, kind: str | None = None) -> int:
        sql, params = "DELETE FROM decision_links WHERE from_id = ? AND to_id = ?", [from_id, to_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        with self._transaction() as conn:
            return conn.execute(sql, params).rowcount

    def iter_links(self, batch: int = 1000) -> Iterator[dict]:
        return self._pages("decision_links", decode_link, batch)

    def upsert_links(self, rows: Iterable[dict]) -> int:
        rows = list(rows)
        count = 0
        for start in range(0, len(rows), 500):
            with self._transaction() as conn:
                count += self._insert_links(conn, rows[start : start + 500])
        return count


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _in_memory(rows: list[dict], fts_query: str, *, fillers: bool) -> dict[int, tuple[float, str]]:
    """bm25 score and snippet of each row (by position) an in-memory FTS5 index of just these rows matches."""
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(
            f"CREATE VIRTUAL TABLE decision_search USING fts5(decision, comment, tags, summary, tokenize='{TOKENIZER}')"
        )
        conn.executemany(
            "INSERT INTO decision_search (rowid, decision, comment, tags, summary) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    n,
                    r["decision"],
                    r["comment"] or "",
                    _json(r["tags"] or []),
                    (r["ai_analysis"] or {}).get("summary") or "" if isinstance(r["ai_analysis"], dict) else "",
                )
                for n, r in enumerate(rows)
            ],
        )
        if fillers:
            # bm25 weighs a word by how few documents hold it; among the candidates alone every query word is
            # common. Filler documents of the candidates' average length make the matches as rare as in a vault.
            length = max(1, sum(len(r["decision"].split()) for r in rows) // len(rows))
            filler = " ".join(["zzfiller"] * length)
            conn.executemany(
                "INSERT INTO decision_search (rowid, decision, comment, tags, summary) VALUES (?, ?, '', '[]', '')",
                [(len(rows) + n, filler) for n in range(2 * len(rows) + 10)],
            )
        try:
            found = conn.execute(
                f"SELECT rowid, {BM25}, snippet(decision_search, -1, ?, ?, '…', {SNIPPET_TOKENS})"
                " FROM decision_search WHERE decision_search MATCH ?",
                (MARK_START, MARK_END, fts_query),
            ).fetchall()
        except sqlite3.OperationalError:
            found = []
    return {n: (-rank, snippet) for n, rank, snippet in found}


def _plain_snippet(row: dict) -> str:
    return " ".join(row["decision"].split()[:SNIPPET_TOKENS])


def snippets_in_memory(rows: list[dict], fts_query: str) -> list[str]:
    """A snippet of each row with the query's matches marked, built from an in-memory index of just these rows.

    Cheaper than snippet() on the vault's index, which would look every row's matches up again there. Only the
    first SNIPPET_CHARS of a text are indexed: a 20,000-character memo costs as much as a short text, and a hit
    whose match lies further on shows the start of its text.
    """
    openings = [{**row, "decision": row["decision"][:SNIPPET_CHARS]} for row in rows]
    found = _in_memory(openings, fts_query, fillers=False) if rows else {}
    return [found[n][1] if n in found else _plain_snippet(row) for n, row in enumerate(rows)]


def rank_in_memory(rows: list[dict], fts_query: str, limit: int) -> list[dict]:
    """Order decisions another backend found by bm25 over an in-memory FTS5 index of just them, with snippets.

    For a backend that can filter by full-text search but not rank (Supabase REST): the same tokenizer, weights
    and snippets as the SQLite index. A row the index does not match (the server's stemming differs now and then)
    ranks last with the start of its text as snippet.
    """
    if not rows:
        return []
    scored = _in_memory(rows, fts_query, fillers=True)
    hits = []
    for n, row in enumerate(rows):
        score, snippet = scored.get(n, (0.0, _plain_snippet(row)))
        hits.append({**row, "score": round(score, 6), "snippet": snippet})
    hits.sort(key=lambda h: h["created_at"] or "", reverse=True)
    hits.sort(key=lambda h: h["date"], reverse=True)
    hits.sort(key=lambda h: h["score"], reverse=True)
    return hits[:limit]
