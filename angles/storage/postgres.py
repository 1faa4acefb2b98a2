"""PostgreSQL through psycopg 3: a local server, a managed one, or Supabase's connection pooler."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from angles.engines.decision_model import (
    COLUMNS,
    HISTORY_COLUMNS,
    HISTORY_FIELDS,
    JSON_COLUMNS,
    LINK_COLUMNS,
    TIMESTAMP_COLUMNS,
    history_entry,
    to_iso,
    utc_now,
)
from angles.engines.search_query import STOP_WORDS, Query, has_phrase, to_fts5, to_websearch, without_phrases
from angles.errors import DatabaseError
from angles.storage.base import Storage
from angles.storage.rows import canonical, decode, decode_activity, decode_history, decode_link, decode_token, prepare
from angles.storage.sqlite import snippets_in_memory

# The same canonical JSON text prepare(json_as_text=True) writes.
_json_text = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
# Every decision column by name: `SELECT *` would also carry the search index's tsvector to the client.
_COLUMNS = ", ".join(COLUMNS)
_D_COLUMNS = ", ".join(f"d.{c}" for c in COLUMNS)
LIVE = "d.active AND d.superseded_by IS NULL AND d.deleted_at IS NULL"
RARE_WORDS = 4
DUPLICATE_WORDS = 3
# A phrase is checked in at most this many decisions holding all its words: the check reads each one's word
# positions from the table, where the words alone are answered by the index.
PHRASE_CHECKS = 1000
# The word-pair index (migration 0006) leaves out a pair longer than this; a decision with such a pair, or with
# too many pairs for a tsvector, holds INCOMPLETE_PAIRS instead and is always checked by a phrase search.
PAIR_BYTES = 255
INCOMPLETE_PAIRS = "incomplete"
# A query matching more decisions than this ranks only this many of them (the first found, in storage order).
RANK_POOL = 300
# Decisions sharing a text's rare words that are ranked for similarity.
SIMILAR_POOL = 100
# A word held by more than this share of decisions says little about a text: similarity leaves it out
# (unless the text has no rarer word), so the lookup never reads the long match list of a common word.
RARE_SHARE = 0.01
# A tsquery of stored lexemes (already stemmed, so not parsed again) joined by an operator: params (list, op).
# Built on the server from an array, so the planner cannot tell how common the words are and takes the index:
# for the rare words these lookups choose, its estimate from the statistics is far too high, and the scan of
# the table it would then prefer reads most of it.
_LEXEMES_QUERY = "array_to_string(ARRAY(SELECT quote_literal(w) FROM unnest(%s::text[]) w), %s)::tsquery"
# How long the server's statistics of common words are trusted before being read again.
STATS_TTL_S = 600
# Put in a bookkeeping statement's RETURNING (the connection autocommits, so the statement is its own transaction):
# that one commit does not wait for the WAL to reach the disk, the wait being most of a small write's time. One
# round trip, where BEGIN; SET LOCAL synchronous_commit = off; ...; COMMIT take four. A server crash may lose such a
# row (an activity line, a write count, a last-use time), never corrupt anything. Only in a statement run alone,
# never inside a transaction that also writes a decision.
NO_WAIT = "set_config('synchronous_commit', 'off', true)"
# Rows per COPY into the staging table and per merge statement (per transaction unless atomic).
COPY_BATCH = 5000
STAGE = "angles_upsert_stage"
_PREAMBLE = re.compile(r"^(?:connection failed:\s*)?(?:connection to server at [^,]+, port \d+ failed:\s*)?")


def _reason(exc: Exception, url: str = "") -> str:
    """The first line of a driver error, without libpq's preamble, severity label or the URL's password."""
    text = str(exc).strip()
    if url:
        text = text.replace(url, "DATABASE_URL")
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    first = _PREAMBLE.sub("", first)
    return re.sub(r"^(FATAL|ERROR):\s+", "", first) or type(exc).__name__


def _tsquery_lexeme(lexeme: str) -> str:
    """One lexeme as a quoted tsquery operand, whatever characters it holds."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _json_value(column: str) -> str:
    """SQL giving a column's JSON text exactly as json.dumps writes the value decode() returns."""
    if column in TIMESTAMP_COLUMNS:
        expr = f"""'"' || to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'"""
    elif column in JSON_COLUMNS:
        # jsonb prints like json.dumps (same separators, key order and string escapes); numbers: see _exact.
        expr = f"{column}::text"
    else:
        expr = f"to_json({column})::text"
    return f"coalesce({expr}, '{'[]' if column == 'tags' else 'null'}')"


# jsonb prints a float Python wrote as 1e-05 as 0.00001 (numbers from 1e-4 up print alike, larger ones are integers
# to both); a line holding such a number ends with a group separator, and the client prints it through Python's
# json like any other backend's. Tags hold only text (validate() makes them so).
_MARK = b"\x1d"
_ODD_MARK = (
    "CASE WHEN ai_analysis IS NOT NULL AND jsonb_path_exists(ai_analysis,"
    " 'strict $.** ? (@.type() == \"number\" && @ != 0 && @ > -0.0001 && @ < 0.0001)') THEN E'\\x1d' END"
)

# One JSON line per decision, built by the server in one pass over the table. The rows come in the table's
# physical order: an ORDER BY id would make the server fetch every row through the index (or sort them all),
# which takes longer than the whole scan; the client orders them instead (dump_decisions).
_DUMP_SQL = (
    "COPY (SELECT concat("
    + ", ".join(f"'{'{' if i == 0 else ', '}\"{c}\": ', {_json_value(c)}" for i, c in enumerate(COLUMNS))
    + f", '}}', {_ODD_MARK}) FROM decision_vault) TO STDOUT"
)
# A line begins {"id": "<uuid>", so its 9th and 10th bytes, the id's first two hex digits, pick its bucket.
_HEX = b"0123456789abcdef"
_BUCKETS = [bytes((a, b)) for a in _HEX for b in _HEX]
_SPILL_ROWS = 64
# Every line's keys hold this many '_' (no other fixed part of a line holds one).
_KEY_UNDERSCORES = sum(column.count("_") for column in COLUMNS)


def _exact(chunk: bytes) -> bytes:
    """COPY lines back into JSON lines exactly as json.dumps writes them."""
    # JSON escapes every control character, so a doubled backslash is the only escape COPY's text format adds.
    if b"\\" in chunk:
        chunk = chunk.replace(b"\\\\", b"\\")
    if _MARK in chunk:
        chunk = b"".join(
            json.dumps(json.loads(line[:-2]), ensure_ascii=False).encode() + b"\n"
            if line.endswith(_MARK + b"\n")
            else line
            for line in chunk.splitlines(keepends=True)
        )
    return chunk


def _segments(rows: Iterable[dict], size: int) -> Iterator[tuple[tuple[str, ...], list[str]]]:
    """Consecutive rows with the same columns and no repeated id, at most `size` at a time, as COPY text lines.

    One INSERT ... ON CONFLICT cannot touch a row twice, so a repeated id starts a new segment; the input
    order is kept throughout, so a superseded_by target written first is there when the link is checked.
    """
    columns: tuple[str, ...] | None = None
    lines: list[str] = []
    ids: set = set()
    width = len(COLUMNS)
    for row in rows:
        # A complete row in column order (every restored backup line) needs nothing prepare() would change.
        if len(row) == width and row.get("updated_at") and row.get("tags") is not None and tuple(row) == COLUMNS:
            prepared, names = row, COLUMNS
        else:
            prepared = prepare(row, json_as_text=False, bool_as_int=False)
            names = tuple(prepared)
        key = prepared.get("id")
        if lines and (names != columns or key in ids or len(lines) >= size):
            yield columns, lines
            lines, ids = [], set()
        columns = names
        lines.append("\t".join(map(_copy_cell, prepared.values())) + "\n")
        ids.add(key)
    if lines:
        yield columns, lines


def _copy_cell(value) -> str:
    """One value in COPY's text format (psycopg's write_row does the same, at twice the cost per row)."""
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is str:
        if "\\" in value or "\n" in value or "\t" in value or "\r" in value:
            return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        return value
    if kind is bool:
        return "t" if value else "f"
    if kind is dict or kind is list:
        return _copy_cell(_json_text(value))
    # Dates, timestamps, UUIDs and numbers: their str() is a form PostgreSQL parses.
    return _copy_cell(str(value))


def _overlapped(
    items: Iterable, handle: Callable[[object], None], *, size: Callable[[object], int], name: str, depth: int
) -> int:
    """handle(item) for every item on a helper thread while this one produces the next; the rows handled.

    Producing rows is Python work and handling them mostly the server's, so the two overlap. The first
    failure stops the producer and is raised here, in the caller's thread (inside its transaction).
    """
    pending: queue.Queue = queue.Queue(maxsize=depth)
    failures: list[BaseException] = []

    def work() -> None:
        # Keeps taking items after a failure so the producer never blocks on a full queue.
        while (item := pending.get()) is not None:
            if failures:
                continue
            try:
                handle(item)
            except BaseException as exc:  # re-raised below in the caller's thread
                failures.append(exc)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    count = 0
    try:
        for item in items:
            if failures:
                break
            pending.put(item)
            count += size(item)
    finally:
        pending.put(None)
        worker.join()
    if failures:
        raise failures[0]
    return count


class _Stage:
    """The staging table of one transaction's merges: created by the first, emptied before each next one."""

    def __init__(self, conn, source: str):
        self.conn, self.source, self.made = conn, source, False

    def merge(self, columns: tuple[str, ...], values: list) -> None:
        if self.made:
            self.conn.execute(f"TRUNCATE {STAGE}")
        else:
            _create_stage(self.conn)
            self.made = True
        _merge(self.conn, columns, values, self.source)


def _merge_all(conn, segments: Iterator[tuple[tuple[str, ...], list[str]]], source: str = "system") -> int:
    """Merge every segment in the open transaction, on a helper thread while this one prepares the next."""
    stage = _Stage(conn, source)
    return _overlapped(
        segments, lambda item: stage.merge(*item), size=lambda item: len(item[1]), name="angles-postgres-merge", depth=2
    )


_COPY_ALL = f"COPY decision_vault ({_COLUMNS}) FROM STDIN"


def _copy_line(row: tuple[bytes, tuple[bytes, ...]] | dict) -> bytes:
    """A restored row as a line of COPY text: a plain line's cells as they are, a parsed row through prepare()."""
    if isinstance(row, tuple):
        return b"\t".join(row[1]) + b"\n"
    prepared = prepare(row, json_as_text=False, bool_as_int=False)
    return ("\t".join([_copy_cell(prepared.get(c)) for c in COLUMNS]) + "\n").encode("utf-8")


def _copy_or_merge_all(conn, rows: Iterable[tuple | dict], size: int, source: str) -> int:
    """COPY rows straight into decision_vault in batches, each under a savepoint, on a helper thread.

    A batch the COPY refuses (a row already there, a link to a row not written yet, a value the table rejects)
    is rolled back to its savepoint and merged like any upsert (history, ON CONFLICT, the same errors), so a
    restore into an empty table ends exactly as the merge would have left it, only sooner.
    """
    stage = _Stage(conn, source)

    def copy_or_merge(item: tuple[list, bytes]) -> None:
        batch, data = item
        try:
            with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY_ALL) as copy:
                copy.write(data)
        except psycopg.Error as exc:
            logger.info("%d restored rows merged instead of copied: %s", len(batch), _reason(exc))
            parsed = (json.loads(row) if isinstance(row, bytes) else row for row in batch)
            for columns, values in _segments(parsed, size):
                stage.merge(columns, values)

    def batches() -> Iterator[tuple[list, bytes]]:
        batch: list = []
        lines: list[bytes] = []
        for row in rows:
            # A plain row is kept as its line only, for a merge: its cells would double what a batch holds.
            batch.append(row[0] if isinstance(row, tuple) else row)
            lines.append(_copy_line(row))
            if len(batch) >= size:
                yield batch, b"".join(lines)
                batch, lines = [], []
        if batch:
            yield batch, b"".join(lines)

    return _overlapped(batches(), copy_or_merge, size=lambda item: len(item[0]), name="angles-postgres-copy", depth=1)


def _create_stage(conn) -> None:
    # Untyped by constraints on purpose: missing columns take the real table's defaults in the INSERT.
    conn.execute(f"CREATE TEMPORARY TABLE {STAGE} ON COMMIT DROP AS SELECT {_COLUMNS} FROM decision_vault WITH NO DATA")


def _timestamp_text(expr: str) -> str:
    return f"""to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


# A stored decision's HISTORY_FIELDS as the JSON decode() would give (previous version in a history row).
_PREVIOUS_JSON = (
    "jsonb_build_object("
    + ", ".join(
        f"'{f}', "
        + {"date": "to_char(d.date, 'YYYY-MM-DD')", "deleted_at": _timestamp_text("d.deleted_at")}.get(f, f"d.{f}")
        for f in HISTORY_FIELDS
    )
    + ")"
)


def _history_sql(columns: tuple[str, ...]) -> str | None:
    """SQL storing, before a merge, the current version of every staged row whose content the merge changes."""
    content = [f for f in HISTORY_FIELDS if f in columns]
    if not content:
        return None
    changed = ", ".join(f"CASE WHEN d.{f} IS DISTINCT FROM s.{f} THEN '{f}' END" for f in content)
    old = ", ".join(f"d.{f}" for f in content)
    new = ", ".join(f"s.{f}" for f in content)
    return (
        "INSERT INTO decision_history (decision_id, changed_at, source, changed, previous)"
        f" SELECT d.id, now(), %s, to_jsonb(array_remove(ARRAY[{changed}]::text[], NULL)), {_PREVIOUS_JSON}"
        f" FROM {STAGE} s JOIN decision_vault d ON d.id = s.id WHERE ROW({old}) IS DISTINCT FROM ROW({new})"
    )


def _merge(conn, columns: tuple[str, ...], lines: list[str], source: str = "system") -> None:
    """COPY one segment into the stage, then insert or update decision_vault from it in one statement."""
    names = ", ".join(columns)
    changing = [c for c in columns if c not in ("id", "created_at")]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in changing)
    # Skipping identical rows keeps the updated_at trigger from touching a row nothing changed in.
    old = ", ".join(f"decision_vault.{c}" for c in changing)
    new = ", ".join(f"EXCLUDED.{c}" for c in changing)
    with conn.cursor() as cur:
        with cur.copy(f"COPY {STAGE} ({names}) FROM STDIN") as copy:
            copy.write("".join(lines))
        history = _history_sql(columns)
        if history and _has_history(conn):
            cur.execute(history, (source,))
        cur.execute(
            # In COPY order: a superseded_by target must be inserted before the row that links to it.
            f"INSERT INTO decision_vault ({names}) SELECT {names} FROM {STAGE} ORDER BY ctid"
            f" ON CONFLICT (id) DO UPDATE SET {updates} WHERE ROW({old}) IS DISTINCT FROM ROW({new})"
        )


def _delete_in(conn, ids: list[str]) -> None:
    # One statement: PostgreSQL checks foreign keys at its end, so links among the deleted rows need no order.
    if ids:
        conn.execute("DELETE FROM decision_vault WHERE id = ANY(%s::uuid[])", (ids,))


def _has_history(conn) -> bool:
    return conn.execute("SELECT to_regclass('decision_history') AS t").fetchone()["t"] is not None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class PostgresStorage(Storage):
    kind = "postgres"
    dialect = "postgres"
    _common_words: dict[str, float] | None = None
    _common_words_at = 0.0

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.RLock()
        try:
            info = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise DatabaseError(
                f"DATABASE_URL is not a valid PostgreSQL connection string: {_reason(exc, url)}"
            ) from None
        self.host = info.get("host") or "localhost"
        self.port = info.get("port") or "5432"
        self.dbname = info.get("dbname") or info.get("user") or ""
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        try:
            # prepare_threshold=None: Supabase's transaction pooler (port 6543) cannot keep prepared statements.
            return psycopg.connect(
                self.url,
                autocommit=True,
                prepare_threshold=None,
                row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="angles",
            )
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to PostgreSQL at {self.host}:{self.port}: {_reason(exc, self.url)}"
            ) from None

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def describe(self) -> str:
        return f"postgresql://{self.host}:{self.port}/{self.dbname}"

    @contextmanager
    def _guard(self):
        """Hold the connection for one unit of work; reconnect once if the server dropped it."""
        with self._lock:
            if self.conn.closed or self.conn.broken:
                logger.warning("PostgreSQL connection to %s:%s was lost; reconnecting", self.host, self.port)
                self.conn = self._connect()
            try:
                yield self.conn
            except psycopg.Error as exc:
                raise DatabaseError(f"PostgreSQL error on {self.host}:{self.port}: {_reason(exc, self.url)}") from exc

    @contextmanager
    def _transaction(self):
        with self._guard() as conn, conn.transaction():
            yield conn

    def ping(self) -> None:
        with self._guard() as conn:
            conn.execute("SELECT 1").fetchone()

    @staticmethod
    def _table_exists(conn, name: str) -> bool:
        return conn.execute("SELECT to_regclass(%s) AS t", (name,)).fetchone()["t"] is not None

    def applied_migrations(self) -> list[dict]:
        with self._guard() as conn:
            if not self._table_exists(conn, "schema_migrations"):
                return []
            rows = conn.execute(
                "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
            ).fetchall()
            return [{**r, "applied_at": to_iso(r["applied_at"])} for r in rows]

    def apply_migration(self, version: int, name: str, checksum: str, sql: str) -> None:
        with self._lock:
            if self.conn.closed or self.conn.broken:
                self.conn = self._connect()
            conn = self.conn
            # Driver errors pass through unchanged so migrate() can name the migration that failed.
            with conn.transaction():
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                    " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                conn.execute(sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (%s, %s, %s, %s)",
                    (int(version), name, checksum, utc_now()),
                )

    @staticmethod
    def _adapt(row: dict) -> dict:
        out = prepare(row, json_as_text=False, bool_as_int=False)
        for column in JSON_COLUMNS:
            if column in out and out[column] is not None:
                out[column] = Jsonb(out[column])
        return out

    def upsert_decisions(
        self, rows: Iterable[dict], *, atomic: bool = False, batch: int = COPY_BATCH, source: str = "system"
    ) -> int:
        """COPY each run of rows into a temporary table, then merge it with one INSERT ... ON CONFLICT."""
        if not atomic and isinstance(rows, list) and len(rows) == 1 and self._insert_new(rows[0]) is not None:
            return 1
        if atomic:
            with self._transaction() as conn:
                return _merge_all(conn, _segments(rows, batch), source)
        count = 0
        for columns, values in _segments(rows, batch):
            with self._transaction() as conn:
                _create_stage(conn)
                _merge(conn, columns, values, source)
            count += len(values)
        return count

    def _insert_new(self, row: dict) -> dict | None:
        """Insert one decision whose id is not stored yet (adding one) and return it as stored; None, writing
        nothing, if the id is there.

        A plain INSERT: the staged COPY merge costs more than the row for a single decision.
        """
        prepared = self._adapt(row)
        names = list(prepared)
        # One statement in autocommit is its own transaction: no BEGIN and COMMIT round trips.
        with self._guard() as conn:
            stored = conn.execute(
                f"INSERT INTO decision_vault ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})"
                f" ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}",
                [prepared[n] for n in names],
            ).fetchone()
        return decode(stored) if stored else None

    def add_decision(self, row: dict, *, source: str = "system") -> dict | None:
        stored = self._insert_new(row)
        return stored if stored is not None else super().add_decision(row, source=source)

    def update_decision(
        self, decision_id: str, fields: dict, *, source: str = "system", reason: str | None = None
    ) -> None:
        if not fields or not _is_uuid(decision_id):
            return
        prepared = self._adapt({"id": decision_id, **fields})
        columns = [c for c in fields if c in COLUMNS and c != "id"]
        if "updated_at" not in fields:
            columns.append("updated_at")
        assignments = ", ".join(f"{c} = %s" for c in columns)
        with self._transaction() as conn:
            if any(c in HISTORY_FIELDS for c in columns) and _has_history(conn):
                old = conn.execute(
                    f"SELECT {_COLUMNS} FROM decision_vault WHERE id = %s FOR UPDATE", (decision_id,)
                ).fetchone()
                if old is not None:
                    old = decode(old)
                    new = canonical({c: fields[c] for c in columns if c in HISTORY_FIELDS})
                    entry = history_entry(old, new, source, reason)
                    if entry:
                        self._insert_history(conn, [entry])
            conn.execute(
                f"UPDATE decision_vault SET {assignments} WHERE id = %s",
                [prepared[c] for c in columns] + [decision_id],
            )

    def _select_one(self, where: str, value: str) -> dict | None:
        with self._guard() as conn:
            # Asked after the fact rather than before: one round trip per look-up, not two.
            try:
                row = conn.execute(f"SELECT {_COLUMNS} FROM decision_vault WHERE {where} = %s", (value,)).fetchone()
            except psycopg.errors.UndefinedTable:
                return None
            return decode(row) if row else None

    def get_decision(self, decision_id: str) -> dict | None:
        if not _is_uuid(decision_id):
            return None
        return self._select_one("id", decision_id)

    def find_decision_by_page(self, page_id: str) -> dict | None:
        return self._select_one("notion_page_id", page_id)

    def iter_decisions(self, *, since=None, type=None, priority=None, active=None, batch=1000) -> Iterator[dict]:
        clauses, params = [], []
        for clause, value in (("updated_at >= %s", since), ("type = %s", type), ("priority = %s", priority)):
            if value:
                clauses.append(clause)
                params.append(value)
        if active is not None:
            clauses.append("active = %s")
            params.append(bool(active))
        with self._guard() as conn:
            if not self._table_exists(conn, "decision_vault"):
                return
        last = None
        while True:
            keyset = ["id > %s"] if last is not None else []
            where = " AND ".join([*keyset, *clauses]) or "TRUE"
            args = ([last] if last is not None else []) + params + [batch]
            with self._guard() as conn:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM decision_vault WHERE {where} ORDER BY id LIMIT %s", args
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield decode(row)
            last = rows[-1]["id"]

    def dump_decisions(self, batch_bytes: int = 1 << 20, *, scan=None) -> Iterator[list[bytes]]:
        # The server writes the JSON and streams it with COPY on a connection of its own (one snapshot, and the
        # rows arrive while the client works on earlier ones). The client sorts them by id: each line goes to
        # one of 256 buckets by the id's first two hex digits, full buckets spill to a temporary file, then each
        # bucket is read back and sorted on its own, so memory holds one bucket at a time.
        with self._guard() as conn:
            if not self._table_exists(conn, "decision_vault"):
                return
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="angles-export"
            )
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to PostgreSQL at {self.host}:{self.port}: {_reason(exc, self.url)}"
            ) from None
        pending: list = [None] * 65536
        for key in _BUCKETS:
            pending[key[0] << 8 | key[1]] = []
        runs: dict[bytes, list[tuple[int, int]]] = {key: [] for key in _BUCKETS}
        with conn, tempfile.TemporaryFile(prefix="angles-dump-") as spill:

            def finish(rows: list) -> bytes:
                chunk = _exact(b"".join(rows))
                if scan:
                    # One count instead of five searches: when every '_' is in a key, no text holds one.
                    scan(chunk, b"_" if chunk.count(b"_") == _KEY_UNDERSCORES * len(rows) else b"")
                return chunk

            try:
                conn.execute("SET client_encoding = 'UTF8'")
                with conn.cursor() as cur, cur.copy(_DUMP_SQL) as copy:
                    for data in copy:
                        rows = pending[data[8] << 8 | data[9]]
                        rows.append(data)
                        if len(rows) == _SPILL_ROWS:
                            chunk = finish(rows)
                            runs[bytes(data[8:10])].append((spill.tell(), len(chunk)))
                            spill.write(chunk)
                            rows.clear()
            except psycopg.Error as exc:
                raise DatabaseError(f"PostgreSQL error on {self.host}:{self.port}: {_reason(exc, self.url)}") from exc
            spill.flush()
            out: list[bytes] = []
            size = 0
            for key in _BUCKETS:
                parts = [os.pread(spill.fileno(), length, offset) for offset, length in runs[key]]
                rows = pending[key[0] << 8 | key[1]]
                if rows:
                    parts.append(finish(rows))
                lines: list[bytes] = []
                for part in parts:
                    lines += part.split(b"\n")
                # Every line starts {"id": "<canonical uuid>", so byte order is id order; each part's final
                # newline left an empty line, and those sort first.
                lines.sort()
                del lines[: len(parts)]
                out += lines
                size += sum(map(len, lines))
                if size >= batch_bytes:
                    yield out
                    out, size = [], 0
            if out:
                yield out

    def count_decisions(self) -> int:
        with self._guard() as conn:
            if not self._table_exists(conn, "decision_vault"):
                return 0
            return conn.execute("SELECT count(*) AS n FROM decision_vault").fetchone()["n"]

    def delete_decisions(self, ids: Iterable[str]) -> int:
        ids = [i for i in ids if _is_uuid(i)]
        with self._transaction() as conn:
            _delete_in(conn, ids)
        return len(ids)

    def upsert_and_prune(
        self, rows: Iterable[dict], prune_ids: list[str], batch: int = COPY_BATCH, source: str = "restore"
    ) -> tuple[int, int]:
        ids = [i for i in prune_ids if _is_uuid(i)]
        with self._transaction() as conn:
            written = _merge_all(conn, _segments(rows, batch), source)
            _delete_in(conn, ids)
        return written, len(ids)

    def restore_lines(self, rows: Iterable[tuple | dict], *, source: str = "restore", batch: int = COPY_BATCH) -> int:
        # A plain COPY into the table: the staged merge costs the server half as much again, and plain backup
        # lines go to the server as they are, never parsed. Any batch the COPY refuses is merged instead.
        with self._transaction() as conn:
            conn.execute("SET LOCAL client_encoding = 'UTF8'")
            return _copy_or_merge_all(conn, rows, batch, source)

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
        with self._guard() as conn:
            row = conn.execute(
                "INSERT INTO agent_activity (agent_name, action, details, status, created_at, started_at,"
                " finished_at, duration_s, host) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
                + ("" if durable else f", {NO_WAIT}"),
                (agent_name, action, details, status, utc_now(), started_at, finished_at, duration_s, host),
            ).fetchone()
            return row["id"]

    def iter_activity(self, *, since=None, agent_name=None, action=None, batch: int = 1000) -> Iterator[dict]:
        clauses, params = [], []
        for clause, value in (("created_at >= %s", since), ("agent_name = %s", agent_name), ("action = %s", action)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        with self._guard() as conn:
            if not self._table_exists(conn, "agent_activity"):
                return
        last = 0
        while True:
            where = " AND ".join(["id > %s", *clauses])
            with self._guard() as conn:
                rows = conn.execute(
                    f"SELECT * FROM agent_activity WHERE {where} ORDER BY id LIMIT %s", [last, *params, batch]
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield decode_activity(row)
            last = rows[-1]["id"]

    def get_state(self, key: str) -> str | None:
        with self._guard() as conn:
            if not self._table_exists(conn, "sync_state"):
                return None
            row = conn.execute("SELECT value FROM sync_state WHERE key = %s", (key,)).fetchone()
            return row["value"] if row else None

    def set_state(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO sync_state (key, value, updated_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
                (key, value, utc_now()),
            )

    def claim_slot(self, job: str, slot: str, host: str) -> bool:
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO job_slots (job, slot, host, claimed_at) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (job, slot, host, utc_now()),
            )
            return cur.rowcount == 1

    def prune_slots(self, before: str) -> int:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM job_slots WHERE slot < %s", (before,)).rowcount

    def add_token(self, name: str, scope: str, token_hash: str) -> bool:
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO mcp_tokens (name, scope, token_hash, created_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET scope = EXCLUDED.scope, token_hash = EXCLUDED.token_hash,"
                " created_at = EXCLUDED.created_at, last_used_at = NULL, revoked_at = NULL"
                " WHERE mcp_tokens.revoked_at IS NOT NULL",
                (name, scope, token_hash, utc_now()),
            )
            return cur.rowcount == 1

    def find_token(self, token_hash: str) -> dict | None:
        with self._guard() as conn:
            row = conn.execute(
                "SELECT name, scope, created_at, last_used_at, revoked_at FROM mcp_tokens WHERE token_hash = %s",
                (token_hash,),
            ).fetchone()
            return decode_token(row) if row else None

    def list_tokens(self) -> list[dict]:
        with self._guard() as conn:
            if not self._table_exists(conn, "mcp_tokens"):
                return []
            rows = conn.execute(
                "SELECT name, scope, created_at, last_used_at, revoked_at FROM mcp_tokens ORDER BY name"
            ).fetchall()
            return [decode_token(r) for r in rows]

    def revoke_token(self, name: str) -> bool:
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE mcp_tokens SET revoked_at = %s WHERE name = %s AND revoked_at IS NULL", (utc_now(), name)
            )
            return cur.rowcount == 1

    def mark_token_used(self, name: str, when: str) -> None:
        with self._guard() as conn:
            conn.execute(f"UPDATE mcp_tokens SET last_used_at = %s WHERE name = %s RETURNING {NO_WAIT}", (when, name))

    def count_token_write(self, name: str, window_start: str) -> int:
        # NO_WAIT: a crash may lose the last moment's counts, letting at most that many more writes pass this minute.
        with self._guard() as conn:
            writes = conn.execute(
                "INSERT INTO mcp_write_counts (token_name, window_start, writes) VALUES (%s, %s, 1)"
                " ON CONFLICT (token_name, window_start) DO UPDATE SET writes = mcp_write_counts.writes + 1"
                f" RETURNING writes, {NO_WAIT}",
                (name, window_start),
            ).fetchone()["writes"]
            if writes == 1:
                conn.execute(
                    "DELETE FROM mcp_write_counts WHERE token_name = %s AND window_start < %s", (name, window_start)
                )
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
        text = to_websearch(query)
        filters, values = [], []
        for clause, value in (
            ("d.type = %s", type),
            ("d.priority = %s", priority),
            ("d.date >= %s", since),
            ("d.date <= %s", until),
        ):
            if value is not None:
                filters.append(clause)
                values.append(value)
        if tag is not None:
            filters.append("d.tags @> %s::jsonb")
            values.append(json.dumps([tag]))
        if not include_inactive:
            filters.append(LIVE)
        matches = "d.search_vector @@ websearch_to_tsquery('angles_search', %s)"
        # Up to RANK_POOL matches are ranked (all of them, unless the query is very broad: ranking every match
        # of a common word would read a large share of the table). The query goes in as a literal parameter so
        # the planner can judge how many rows it matches.
        # The pool holds no text: a long text is stored apart (TOAST) and is read for the hits only.
        columns = "d.id, d.date, d.created_at, d.search_vector"
        found = f"SELECT {columns} FROM decision_vault d WHERE {' AND '.join([matches, *filters])}"
        with self._guard() as conn:
            phrased = has_phrase(query)
            pairs = self._phrase_pairs(conn, query) if phrased else None
            if pairs is not None:
                # Through the word-pair index: the decisions holding the phrases' adjacent words (few, where
                # the words alone may be in many), then the whole query checked on each, until the pool is full.
                # OFFSET 0 keeps that check out of the index scan, which would otherwise re-derive every
                # candidate's pairs to recheck it.
                inner = " AND ".join(["angles_word_pairs(d.search_vector) @@ %s::tsquery", *filters])
                pool = (
                    f"pool AS (SELECT * FROM (SELECT {columns} FROM decision_vault d WHERE {inner} OFFSET 0) d"
                    f" WHERE {matches} LIMIT {RANK_POOL})"
                )
                params = [pairs, *values, text]
            elif phrased:
                # A phrase the pairs cannot narrow (its words kept apart by stop words, or an OR with plain words):
                # the words of the phrases first, through the index; the phrases then in the first
                # PHRASE_CHECKS of those decisions only. Only when that comes up short of `limit` while more
                # decisions held the words does the same statement check the phrase in all of them: the bound
                # costs speed, never hits.
                words = to_websearch(without_phrases(query))
                pool = (
                    f"cand AS MATERIALIZED ({found} LIMIT {PHRASE_CHECKS}),"
                    " bounded AS MATERIALIZED (SELECT * FROM cand d"
                    f" WHERE {matches} LIMIT {RANK_POOL}),"
                    f" short AS (SELECT (SELECT count(*) FROM cand) >= {PHRASE_CHECKS}"
                    " AND (SELECT count(*) FROM bounded) < %s AS more),"
                    " pool AS (SELECT * FROM bounded WHERE NOT (SELECT more FROM short)"
                    f" UNION ALL ({found} AND (SELECT more FROM short) LIMIT {RANK_POOL}))"
                )
                params = [words, *values, text, int(limit), text, *values]
            else:
                pool = f"pool AS ({found} LIMIT {RANK_POOL})"
                params = [text, *values]
            sql = (
                f"WITH {pool},"
                " best AS (SELECT pool.id, ts_rank(pool.search_vector, websearch_to_tsquery('angles_search', %s))"
                " AS rank, pool.date, pool.created_at FROM pool"
                " ORDER BY rank DESC, pool.date DESC, pool.created_at DESC LIMIT %s)"
                f" SELECT {_D_COLUMNS}, best.rank FROM best JOIN decision_vault d ON d.id = best.id"
                " ORDER BY best.rank DESC, best.date DESC, best.created_at DESC"
            )
            # Never prepared: the best plan depends on how common the words are, and a prepared statement ends
            # up with one generic plan for all words, which for a rare word can be a scan of the whole table.
            rows = conn.execute(sql, [*params, text, int(limit)], prepare=False).fetchall()
        hits = [{**decode(row), "score": round(float(row["rank"]), 6)} for row in rows]
        # Snippets from an in-memory index of the hits: ts_headline parses each whole text again, which for a
        # long memo costs more than the search.
        for hit, snippet in zip(hits, snippets_in_memory(hits, to_fts5(query)), strict=True):
            hit["snippet"] = snippet
        return hits

    @staticmethod
    def _phrase_pairs(conn, query: Query) -> str | None:
        """A tsquery of indexed word pairs (migration 0006) held by every decision the query's phrases match, or
        None when some OR group has no phrase two of whose words are adjacent once stop words are dropped."""
        phrases = [" ".join(t.words) for g in query.groups for t in g.include if t.is_phrase]
        if not phrases:
            return None  # only excluded phrases: nothing to look up
        rows = conn.execute(
            "SELECT t.n, u.lexeme, u.positions FROM unnest(%s::text[]) WITH ORDINALITY t(phrase, n),"
            " unnest(to_tsvector('angles_search', t.phrase)) u",
            (phrases,),
        ).fetchall()
        at: dict[tuple[int, int], list[str]] = {}
        for row in rows:
            for position in row["positions"] or ():
                at.setdefault((row["n"], position), []).append(row["lexeme"])
        found: dict[int, set[str]] = {}
        for (n, position), here in at.items():
            after = at.get((n, position + 1), [])
            # websearch_to_tsquery asks for exactly these two lexemes side by side; a position holding several
            # (which the english configuration never makes) is left to the phrase check.
            if len(here) == 1 and len(after) == 1:
                pair = f"{here[0]} {after[0]}"
                if len(pair.encode("utf-8", "surrogatepass")) <= PAIR_BYTES:
                    found.setdefault(n, set()).add(pair)
        groups, n = [], 0
        for group in query.groups:
            pairs: set[str] = set()
            for term in group.include:
                if term.is_phrase:
                    n += 1
                    pairs |= found.get(n, set())
            if not pairs:
                return None
            groups.append("(" + " & ".join(map(_tsquery_lexeme, sorted(pairs))) + ")")
        return " | ".join([*groups, _tsquery_lexeme(INCOMPLETE_PAIRS)])

    def same_text_candidates(self, words: list[str], text: str, limit: int = 20) -> list[dict]:
        with self._guard() as conn:
            lexemes = self._rarest(conn, text)
            if not lexemes:
                # Stop words only: no lexeme to look up, so the text itself is compared (a full scan, rare).
                rows = conn.execute(
                    f"SELECT {_D_COLUMNS} FROM decision_vault d WHERE {LIVE} AND d.decision = %s LIMIT %s",
                    (text, limit),
                ).fetchall()
                return [decode(r) for r in rows]
            # The same text holds every lexeme; its rarest few find it through short posting lists. Closest in
            # size first: octet_length reads a long text's stored size, where length() would decompress it.
            rows = conn.execute(
                f"SELECT {_D_COLUMNS} FROM decision_vault d WHERE {LIVE} AND d.search_vector @@ {_LEXEMES_QUERY}"
                " ORDER BY abs(octet_length(d.decision) - %s) LIMIT %s",
                (lexemes[:DUPLICATE_WORDS], " & ", len(text.encode("utf-8", "surrogatepass")), limit),
            ).fetchall()
        return [decode(r) for r in rows]

    def refresh_search_statistics(self) -> None:
        # The server's statistics hold the common words (pg_stats); autovacuum refreshes them too.
        with self._guard() as conn:
            conn.execute("ANALYZE decision_vault")
        self._common_words = None

    def _rarest(self, conn, text: str) -> list[str]:
        """The text's lexemes, rarest first by the server's statistics of common words."""
        lexemes = [
            r["lexeme"]
            for r in conn.execute("SELECT lexeme FROM unnest(to_tsvector('angles_search', %s))", (text,)).fetchall()
        ]
        common = self._word_frequencies(conn)
        return sorted(lexemes, key=lambda w: (common.get(w, 0.0), -len(w)))

    def _word_frequencies(self, conn) -> dict[str, float]:
        """The share of decisions holding each of the most common words, from the server's own statistics."""
        now = time.monotonic()
        if self._common_words is None or now - self._common_words_at > STATS_TTL_S:
            row = conn.execute(
                "SELECT most_common_elems::text::text[] AS words, most_common_elem_freqs AS freqs FROM pg_stats"
                " WHERE tablename = 'decision_vault' AND attname = 'search_vector'"
                " AND schemaname = current_schema() LIMIT 1"
            ).fetchone()
            found = {}
            if row and row["words"]:
                found = dict(zip(row["words"], row["freqs"], strict=False))
            self._common_words, self._common_words_at = found, now
        return self._common_words

    def similar_candidates(self, words: list[str], limit: int = 20) -> list[dict]:
        unique = list(dict.fromkeys(w.casefold() for w in words if w.casefold() not in STOP_WORDS))
        if not unique:
            return []
        with self._guard() as conn:
            # The rarest words say most about a text and keep the match list short on a large vault.
            ranked = self._rarest(conn, " ".join(unique))
            if not ranked:
                return []
            common = self._word_frequencies(conn)
            rare = [w for w in ranked[:RARE_WORDS] if common.get(w, 0.0) <= RARE_SHARE] or ranked[:1]
            # As for a search: a bounded number of matches is ranked, so a text of common words costs little.
            # The query written out twice, not shared through a CTE, so the planner sees what it matches.
            rows = conn.execute(
                "WITH pool AS (SELECT d.id, d.search_vector FROM decision_vault d"
                f" WHERE d.search_vector @@ {_LEXEMES_QUERY} LIMIT {SIMILAR_POOL}),"
                f" best AS (SELECT pool.id, ts_rank(pool.search_vector, {_LEXEMES_QUERY}) AS rank FROM pool"
                " ORDER BY rank DESC LIMIT %s)"
                f" SELECT {_D_COLUMNS} FROM best JOIN decision_vault d ON d.id = best.id ORDER BY best.rank DESC",
                (rare, " | ", rare, " | ", limit),
            ).fetchall()
        return [decode(r) for r in rows]

    def ids_between(self, low: str, high: str, limit: int) -> list[str]:
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT id FROM decision_vault WHERE id BETWEEN %s AND %s ORDER BY id LIMIT %s", (low, high, limit)
            ).fetchall()
        return [str(r["id"]) for r in rows]

    def superseded_into(self, decision_id: str) -> list[dict]:
        if not _is_uuid(decision_id):
            return []
        with self._guard() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM decision_vault WHERE superseded_by = %s ORDER BY id", (decision_id,)
            ).fetchall()
        return [decode(r) for r in rows]

    def history_of(self, decision_id: str) -> list[dict]:
        if not _is_uuid(decision_id):
            return []
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT * FROM decision_history WHERE decision_id = %s ORDER BY changed_at, id", (decision_id,)
            ).fetchall()
        return [decode_history(r) for r in rows]

    @staticmethod
    def _insert_history(conn, rows: list[dict]) -> int:
        payload = json.dumps([{c: r.get(c) for c in HISTORY_COLUMNS} for r in rows], ensure_ascii=False)
        return conn.execute(
            f"INSERT INTO decision_history ({', '.join(HISTORY_COLUMNS)}) SELECT {', '.join(HISTORY_COLUMNS)}"
            " FROM jsonb_to_recordset(%s::jsonb) AS r(id uuid, decision_id uuid, changed_at timestamptz,"
            " source text, reason text, changed jsonb, previous jsonb) ON CONFLICT (id) DO NOTHING",
            (payload,),
        ).rowcount

    def _pages(self, table: str, decoder, batch: int) -> Iterator[dict]:
        with self._guard() as conn:
            if not self._table_exists(conn, table):
                return
        last = None
        while True:
            where = "id > %s" if last is not None else "TRUE"
            args = ([last] if last is not None else []) + [batch]
            with self._guard() as conn:
                rows = conn.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id LIMIT %s", args).fetchall()
            if not rows:
                return
            for row in rows:
                yield decoder(row)
            last = rows[-1]["id"]

    def iter_history(self, batch: int = 1000) -> Iterator[dict]:
        return self._pages("decision_history", decode_history, batch)

    def _chunked(self, rows: Iterable[dict], write, size: int = 1000) -> int:
        count, chunk = 0, []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= size:
                with self._transaction() as conn:
                    count += write(conn, chunk)
                chunk = []
        if chunk:
            with self._transaction() as conn:
                count += write(conn, chunk)
        return count

    def upsert_history(self, rows: Iterable[dict]) -> int:
        return self._chunked(rows, self._insert_history)

    def links_of(self, decision_id: str) -> list[dict]:
        if not _is_uuid(decision_id):
            return []
        with self._guard() as conn:
            rows = conn.execute(
                "SELECT * FROM decision_links WHERE from_id = %s OR to_id = %s ORDER BY created_at, id",
                (decision_id, decision_id),
            ).fetchall()
        return [decode_link(r) for r in rows]

    @staticmethod
    def _insert_links(conn, rows: list[dict]) -> int:
        # A link to a decision that is not (or no longer) stored is skipped, as a restore may bring one.
        payload = json.dumps([{c: r.get(c) for c in LINK_COLUMNS} for r in rows], ensure_ascii=False)
        return conn.execute(
            f"INSERT INTO decision_links ({', '.join(LINK_COLUMNS)}) SELECT {', '.join(f'r.{c}' for c in LINK_COLUMNS)}"
            " FROM jsonb_to_recordset(%s::jsonb) AS r(id uuid, from_id uuid, to_id uuid, kind text, source text,"
            " created_at timestamptz)"
            " WHERE EXISTS (SELECT 1 FROM decision_vault v WHERE v.id = r.from_id)"
            " AND EXISTS (SELECT 1 FROM decision_vault v WHERE v.id = r.to_id) ON CONFLICT DO NOTHING",
            (payload,),
        ).rowcount

    def add_link(self, row: dict) -> bool:
        with self._transaction() as conn:
            return self._insert_links(conn, [row]) == 1

    def remove_links(self, from_id: str, to_id: str, kind: str | None = None) -> int:
        if not (_is_uuid(from_id) and _is_uuid(to_id)):
            return 0
        sql, params = "DELETE FROM decision_links WHERE from_id = %s AND to_id = %s", [from_id, to_id]
        if kind is not None:
            sql += " AND kind = %s"
            params.append(kind)
        with self._transaction() as conn:
            return conn.execute(sql, params).rowcount

    def iter_links(self, batch: int = 1000) -> Iterator[dict]:
        return self._pages("decision_links", decode_link, batch)

    def upsert_links(self, rows: Iterable[dict]) -> int:
        return self._chunked(rows, self._insert_links)
