"""Supabase over its REST API (PostgREST) with supabase-py, for deployments that have only a URL and a key."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urlparse

from angles.engines.decision_model import (
    COLUMNS,
    HISTORY_COLUMNS,
    HISTORY_FIELDS,
    LINK_COLUMNS,
    history_entry,
    to_iso,
    utc_now,
)
from angles.engines.search_query import STOP_WORDS, Query, any_fts5, to_fts5, to_websearch
from angles.errors import DatabaseError, ExternalServiceError, MigrationError
from angles.rate_limit import TokenBucket
from angles.storage.base import Storage
from angles.storage.rows import canonical, decode, decode_activity, decode_history, decode_link, decode_token, prepare
from angles.storage.sqlite import rank_in_memory

logger = logging.getLogger(__name__)

# Statuses worth another try: rate limited, gateway trouble, PostgREST's pool exhausted.
RETRY_STATUSES = frozenset({429, 502, 503, 504, 520})
# Answers of 429 (over the project's request rate) waited out in a row before giving up.
RATE_LIMITED_RETRIES = 5
MISSING_TABLE_CODES = frozenset({"PGRST205", "42P01"})
AUTH_CODES = frozenset({"PGRST301", "PGRST302", "PGRST303", "42501"})
WRITE_BATCH = 500
DELETE_BATCH = 100
LOOKUP_BATCH = 100
CONFLICT = object()
# Every decision column by name: `*` would also bring the search index's tsvector over the wire.
SELECT = ",".join(COLUMNS)
SEARCH = {"type": "web_search", "config": "angles_search"}
# PostgREST filters but cannot rank: the newest matches, this many, are ranked here (bm25 over just them).
SEARCH_CANDIDATES = 500
# A phrase filter travels in the URL: the first words narrow the duplicate check enough.
PHRASE_WORDS = 40
RARE_WORDS = 6
TOKEN_FIELDS = "name,scope,created_at,last_used_at,revoked_at"
# Compare-and-set rounds a write count may lose to other servers before giving up.
COUNT_ROUNDS = 50


class SupabaseStorage(Storage):
    kind = "supabase"
    dialect = "postgres"
    one_transaction = False  # no transaction across requests

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        rpm: float | None = None,
    ):
        """`rpm`: requests per minute this client sends at most (SUPABASE_RPM); None sends as fast as answered."""
        # supabase-py pulls in auth, realtime and storage clients: import it only when this backend is chosen.
        import httpx
        from supabase import ClientOptions, SupabaseException, create_client

        self.url = url.rstrip("/")
        self.host = urlparse(self.url).netloc or self.url
        self.retries = retries
        self.backoff = backoff
        self.bucket = TokenBucket(rpm / 60.0) if rpm else None
        self._local = threading.local()
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            event_hooks={"response": [self._remember_status]},
        )
        options = ClientOptions(
            auto_refresh_token=False,
            persist_session=False,
            postgrest_client_retry=False,
            httpx_client=self._http,
        )
        try:
            self.client = create_client(self.url, key, options)
        except SupabaseException as exc:
            self._http.close()
            raise DatabaseError(f"cannot use Supabase REST at {self.host}: {exc}") from None

    def _remember_status(self, response) -> None:
        self._local.status = response.status_code
        self._local.retry_after = response.headers.get("Retry-After")

    def close(self) -> None:
        self._http.close()

    def describe(self) -> str:
        return f"supabase-rest:{self.url}"

    def _table(self, name: str):
        return self.client.table(name)

    def _run(
        self,
        build: Callable,
        what: str,
        *,
        idempotent: bool = True,
        missing_ok: bool = False,
        conflict_ok: bool = False,
    ):
        """Execute one request with retries and map failures to domain errors.

        Returns None for a missing table when missing_ok, CONFLICT for a unique violation when conflict_ok.
        """
        import httpx
        from postgrest import APIError

        attempt = limited = 0
        while True:
            self._local.status = None
            self._local.retry_after = None
            if self.bucket is not None:
                self.bucket.acquire()
            try:
                return build().execute()
            except APIError as exc:
                status = self._local.status
                if missing_ok and exc.code in MISSING_TABLE_CODES:
                    return None
                if conflict_ok and exc.code == "23505":
                    return CONFLICT
                # A 429 was refused before anything ran, so even an insert may be sent again.
                if status == 429 and limited < RATE_LIMITED_RETRIES:
                    self._pause(limited, what, "HTTP 429 rate limited")
                    limited += 1
                    continue
                if status in RETRY_STATUSES and idempotent and attempt < self.retries:
                    self._pause(attempt, what, f"HTTP {status}")
                    attempt += 1
                    continue
                raise self._api_error(exc, status, what) from None
            except httpx.TransportError as exc:
                retry = idempotent or isinstance(exc, httpx.ConnectError)
                if retry and attempt < self.retries:
                    self._pause(attempt, what, type(exc).__name__)
                    attempt += 1
                    continue
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ExternalServiceError(f"Supabase REST at {self.host} is unreachable ({what}): {reason}") from None

    def _pause(self, attempt: int, what: str, reason: str) -> None:
        delay = self.backoff * (2**attempt)
        retry_after = self._local.retry_after
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), 60.0))
            except ValueError:
                pass
        logger.warning("Supabase REST %s failed (%s); retrying in %.1f seconds", what, reason, delay)
        if self.bucket is not None:
            # Every thread of this client holds off, not only the one that was told to.
            self.bucket.pause(delay)
        else:
            time.sleep(delay)

    def _api_error(self, exc, status: int | None, what: str) -> Exception:
        message = (exc.message or "").strip() or "no message"
        label = f"HTTP {status}" if status else "error"
        if status in (401, 403) or exc.code in AUTH_CODES:
            return ExternalServiceError(f"Supabase REST at {self.host} refused the API key ({label}: {message})")
        if status is None or status >= 500 or status == 429:
            return ExternalServiceError(f"Supabase REST at {self.host} failed ({what}): {label} {message}")
        code = f" {exc.code}" if exc.code else ""
        return DatabaseError(f"Supabase REST rejected {what} ({label}{code}): {message}")

    # schema

    def ping(self) -> None:
        # A missing table still proves the API answers and accepts the key.
        self._run(lambda: self._table("decision_vault").select("id").limit(1), "ping", missing_ok=True)

    def applied_migrations(self) -> list[dict]:
        result = self._run(
            lambda: self._table("schema_migrations").select("version,name,checksum,applied_at").order("version"),
            "reading schema_migrations",
            missing_ok=True,
        )
        if result is None:
            return []
        return [{**r, "applied_at": to_iso(r["applied_at"])} for r in result.data]

    def apply_migration(self, version: int, name: str, checksum: str, sql: str) -> None:
        raise MigrationError(
            "cannot run DDL over Supabase REST; apply the SQL in the Supabase SQL editor or set DATABASE_URL"
        )

    # decisions

    def upsert_decisions(
        self, rows: Iterable[dict], *, atomic: bool = False, batch: int = WRITE_BATCH, source: str = "system"
    ) -> int:
        """Upsert in batches; with atomic=True each set of rows with the same columns goes in one request.

        PostgREST runs one request in one transaction, so a single request is all-or-nothing.
        """
        groups: dict[tuple, list[dict]] = {}
        explicit: set[str] = set()
        count = 0
        for row in rows:
            prepared = prepare(row, json_as_text=False, bool_as_int=False)
            if row.get("updated_at"):
                explicit.add(prepared["id"])
            group = groups.setdefault(tuple(sorted(prepared)), [])
            group.append(prepared)
            if not atomic and len(group) >= batch:
                count += self._upsert(group, explicit, source)
                group.clear()
        for group in groups.values():
            if group:
                count += self._upsert(group, explicit, source)
        return count

    def _upsert(self, rows: list[dict], explicit: set[str], source: str) -> int:
        from postgrest.types import ReturnMethod

        payload = self._merge_with_stored(rows, explicit, source)
        if payload:
            self._run(
                lambda: self._table("decision_vault").upsert(payload, on_conflict="id", returning=ReturnMethod.minimal),
                f"upserting {len(payload)} decisions",
            )
        return len(rows)

    def _merge_with_stored(self, rows: list[dict], explicit: set[str], source: str) -> list[dict]:
        """Keep stored created_at and drop rows identical to what is stored, as the SQL backends do.

        PostgREST's merge-duplicates rewrites every column sent, and the updated_at trigger stamps now() on an
        UPDATE that leaves updated_at as it was; without this a repeated upsert or a restore would move both.
        """
        stored: dict[str, dict] = {}
        ids = [r["id"] for r in rows]
        for start in range(0, len(ids), LOOKUP_BATCH):
            chunk = ids[start : start + LOOKUP_BATCH]
            result = self._run(
                lambda chunk=chunk: self._table("decision_vault").select(SELECT).in_("id", chunk),
                "reading decisions before an upsert",
            )
            stored.update({r["id"]: decode(r) for r in result.data})
        payload, history = [], []
        for row in rows:
            old = stored.get(row["id"])
            if old is None:
                payload.append(row)
                continue
            row = {**row, "created_at": old["created_at"]}
            if row["id"] in explicit and decode({**old, **row}) == old:
                continue
            payload.append(row)
            entry = history_entry(old, canonical({f: row[f] for f in HISTORY_FIELDS if f in row}), source)
            if entry:
                history.append(entry)
        # Before the change itself: a failure between the two requests leaves a trace, never a silent overwrite.
        self._insert_history(history)
        return payload

    def update_decision(
        self, decision_id: str, fields: dict, *, source: str = "system", reason: str | None = None
    ) -> None:
        from postgrest.types import ReturnMethod

        if not fields:
            return
        prepared = prepare({"id": decision_id, **fields}, json_as_text=False, bool_as_int=False)
        columns = [c for c in fields if c in COLUMNS and c != "id"]
        if "updated_at" not in fields:
            columns.append("updated_at")
        values = {c: prepared[c] for c in columns}
        content = {c: fields[c] for c in columns if c in HISTORY_FIELDS}
        if content:
            old = self.get_decision(decision_id)
            entry = history_entry(old, canonical(content), source, reason) if old else None
            if entry:
                self._insert_history([entry])
        self._run(
            lambda: self._table("decision_vault").update(values, returning=ReturnMethod.minimal).eq("id", decision_id),
            "updating a decision",
        )

    def _one(self, column: str, value: str) -> dict | None:
        result = self._run(
            lambda: self._table("decision_vault").select(SELECT).eq(column, value).limit(1),
            "reading a decision",
            missing_ok=True,
        )
        if result is None or not result.data:
            return None
        return decode(result.data[0])

    def get_decision(self, decision_id: str) -> dict | None:
        import uuid

        try:
            uuid.UUID(str(decision_id))
        except ValueError:
            return None
        return self._one("id", decision_id)

    def find_decision_by_page(self, page_id: str) -> dict | None:
        return self._one("notion_page_id", page_id)

    def iter_decisions(self, *, since=None, type=None, priority=None, active=None, batch=1000) -> Iterator[dict]:
        def page(last):
            query = self._table("decision_vault").select(SELECT)
            if last is not None:
                query = query.gt("id", last)
            if since:
                query = query.gte("updated_at", since)
            if type:
                query = query.eq("type", type)
            if priority:
                query = query.eq("priority", priority)
            if active is not None:
                query = query.is_("active", bool(active))
            return query.order("id").limit(batch)

        last = None
        while True:
            result = self._run(lambda last=last: page(last), "reading decisions", missing_ok=True)
            # Stop on an empty page, not a short one: the server may cap a page below `batch` (max-rows).
            if result is None or not result.data:
                return
            for row in result.data:
                yield decode(row)
            last = result.data[-1]["id"]

    def count_decisions(self) -> int:
        from postgrest.types import CountMethod

        result = self._run(
            lambda: self._table("decision_vault").select("id", count=CountMethod.exact).limit(1),
            "counting decisions",
            missing_ok=True,
        )
        return 0 if result is None else int(result.count or 0)

    def delete_decisions(self, ids: Iterable[str]) -> int:
        from postgrest.types import ReturnMethod

        ids = list(ids)
        for start in range(0, len(ids), DELETE_BATCH):
            chunk = ids[start : start + DELETE_BATCH]
            self._run(
                lambda chunk=chunk: (
                    self._table("decision_vault").delete(returning=ReturnMethod.minimal).in_("id", chunk)
                ),
                "deleting decisions",
            )
        return len(ids)

    # activity

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
        row = {
            "agent_name": agent_name,
            "action": action,
            "details": details,
            "status": status,
            "created_at": utc_now(),
            "started_at": started_at,
            "finished_at": finished_at,
            "duration_s": duration_s,
            "host": host,
        }
        result = self._run(lambda: self._table("agent_activity").insert(row), "recording activity", idempotent=False)
        return result.data[0]["id"]

    def iter_activity(self, *, since=None, agent_name=None, action=None, batch: int = 1000) -> Iterator[dict]:
        def page(last):
            query = self._table("agent_activity").select("*").gt("id", last)
            if since is not None:
                query = query.gte("created_at", since)
            if agent_name is not None:
                query = query.eq("agent_name", agent_name)
            if action is not None:
                query = query.eq("action", action)
            return query.order("id").limit(batch)

        last = 0
        while True:
            result = self._run(lambda last=last: page(last), "reading activity", missing_ok=True)
            if result is None or not result.data:
                return
            for row in result.data:
                yield decode_activity(row)
            last = result.data[-1]["id"]

    # state and scheduler

    def get_state(self, key: str) -> str | None:
        result = self._run(
            lambda: self._table("sync_state").select("value").eq("key", key).limit(1),
            "reading sync state",
            missing_ok=True,
        )
        if result is None or not result.data:
            return None
        return result.data[0]["value"]

    def set_state(self, key: str, value: str) -> None:
        from postgrest.types import ReturnMethod

        row = {"key": key, "value": value, "updated_at": utc_now()}
        self._run(
            lambda: self._table("sync_state").upsert(row, on_conflict="key", returning=ReturnMethod.minimal),
            "writing sync state",
        )

    def claim_slot(self, job: str, slot: str, host: str) -> bool:
        from postgrest.types import ReturnMethod

        row = {"job": job, "slot": slot, "host": host, "claimed_at": utc_now()}
        result = self._run(
            lambda: self._table("job_slots").insert(row, returning=ReturnMethod.minimal),
            "claiming a job slot",
            idempotent=False,
            conflict_ok=True,
        )
        return result is not CONFLICT

    def prune_slots(self, before: str) -> int:
        result = self._run(
            lambda: self._table("job_slots").delete().lt("slot", before),
            "pruning job slots",
        )
        return len(result.data or [])

    # bearer tokens of the assistants' HTTP door

    def add_token(self, name: str, scope: str, token_hash: str) -> bool:
        from postgrest.types import ReturnMethod

        row = {"name": name, "scope": scope, "token_hash": token_hash, "created_at": utc_now()}
        result = self._run(
            lambda: self._table("mcp_tokens").insert(row, returning=ReturnMethod.minimal),
            "storing a token",
            idempotent=False,
            conflict_ok=True,
        )
        if result is not CONFLICT:
            return True
        # Only a revoked token gives up its name; the filter makes the replacement atomic.
        replaced = self._run(
            lambda: (
                self._table("mcp_tokens")
                .update({**row, "last_used_at": None, "revoked_at": None})
                .eq("name", name)
                .not_.is_("revoked_at", "null")
            ),
            "replacing a revoked token",
        )
        return len(replaced.data or []) == 1

    def find_token(self, token_hash: str) -> dict | None:
        result = self._run(
            lambda: self._table("mcp_tokens").select(TOKEN_FIELDS).eq("token_hash", token_hash).limit(1),
            "reading a token",
        )
        return decode_token(result.data[0]) if result.data else None

    def list_tokens(self) -> list[dict]:
        result = self._run(
            lambda: self._table("mcp_tokens").select(TOKEN_FIELDS).order("name"), "listing tokens", missing_ok=True
        )
        return [] if result is None else [decode_token(r) for r in result.data]

    def revoke_token(self, name: str) -> bool:
        result = self._run(
            lambda: (
                self._table("mcp_tokens").update({"revoked_at": utc_now()}).eq("name", name).is_("revoked_at", "null")
            ),
            "revoking a token",
        )
        return len(result.data or []) == 1

    def mark_token_used(self, name: str, when: str) -> None:
        from postgrest.types import ReturnMethod

        values = {"last_used_at": when}
        self._run(
            lambda: self._table("mcp_tokens").update(values, returning=ReturnMethod.minimal).eq("name", name),
            "recording a token's use",
        )

    def count_token_write(self, name: str, window_start: str) -> int:
        """PostgREST cannot increment a column: compare-and-set on the count, retried when another server won."""
        from postgrest.types import ReturnMethod

        table = "mcp_write_counts"
        for _ in range(COUNT_ROUNDS):
            current = self._run(
                lambda: self._table(table).select("writes").eq("token_name", name).eq("window_start", window_start),
                "reading a write count",
            )
            if not current.data:
                row = {"token_name": name, "window_start": window_start, "writes": 1}
                inserted = self._run(
                    lambda row=row: self._table(table).insert(row, returning=ReturnMethod.minimal),
                    "counting a write",
                    idempotent=False,
                    conflict_ok=True,
                )
                if inserted is not CONFLICT:
                    self._run(
                        lambda: (
                            self._table(table)
                            .delete(returning=ReturnMethod.minimal)
                            .eq("token_name", name)
                            .lt("window_start", window_start)
                        ),
                        "forgetting old write counts",
                    )
                    return 1
                continue
            seen = current.data[0]["writes"]
            updated = self._run(
                lambda seen=seen: (
                    self._table(table)
                    .update({"writes": seen + 1})
                    .eq("token_name", name)
                    .eq("window_start", window_start)
                    .eq("writes", seen)
                ),
                "counting a write",
                idempotent=False,
            )
            if updated.data:
                return seen + 1
        raise DatabaseError(
            f"Supabase REST at {self.host}: could not count a write of token {name!r} (too many concurrent writers)"
        )

    # the searchable vault

    def _live(self, query):
        return query.is_("active", True).is_("superseded_by", "null").is_("deleted_at", "null")

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
        def build():
            request = self._table("decision_vault").select(SELECT)
            request = request.text_search("search_vector", to_websearch(query), SEARCH)
            for column, value in (("type", type), ("priority", priority)):
                if value is not None:
                    request = request.eq(column, value)
            if tag is not None:
                request = request.contains("tags", json.dumps([tag], ensure_ascii=False))
            if since is not None:
                request = request.gte("date", since)
            if until is not None:
                request = request.lte("date", until)
            if not include_inactive:
                request = self._live(request)
            return request.order("date", desc=True).order("created_at", desc=True).limit(SEARCH_CANDIDATES)

        result = self._run(build, "searching decisions", missing_ok=True)
        rows = [decode(r) for r in result.data] if result is not None else []
        return rank_in_memory(rows, to_fts5(query), limit)

    def same_text_candidates(self, words: list[str], text: str, limit: int = 20) -> list[dict]:
        def build():
            request = self._live(self._table("decision_vault").select(SELECT))
            if any(w.casefold() not in STOP_WORDS for w in words):
                phrase = " ".join(words[:PHRASE_WORDS])
                request = request.text_search("search_vector", phrase, {"type": "phrase", "config": "angles_search"})
            else:
                # Stop words only make an empty phrase, which matches nothing: compare the text itself.
                request = request.eq("decision", text)
            return request.limit(SEARCH_CANDIDATES)

        result = self._run(build, "looking for the same decision", missing_ok=True)
        rows = [decode(r) for r in result.data] if result is not None else []
        rows.sort(key=lambda r: abs(len(r["decision"]) - len(text)))
        return rows[:limit]

    def similar_candidates(self, words: list[str], limit: int = 20) -> list[dict]:
        unique = list(dict.fromkeys(w.casefold() for w in words if w.casefold() not in STOP_WORDS))
        if not unique:
            return []
        # No word statistics over REST: the longest words stand in for the rarest.
        chosen = sorted(unique, key=len, reverse=True)[:RARE_WORDS]
        result = self._run(
            lambda: (
                self._table("decision_vault")
                .select(SELECT)
                .text_search("search_vector", " OR ".join(chosen), SEARCH)
                .order("date", desc=True)
                .limit(SEARCH_CANDIDATES)
            ),
            "looking for similar decisions",
            missing_ok=True,
        )
        rows = [decode(r) for r in result.data] if result is not None else []
        return rank_in_memory(rows, any_fts5(chosen), limit)

    def refresh_search_statistics(self) -> None:
        """Nothing to do over REST: the similarity lookups here use no word counts."""

    def ids_between(self, low: str, high: str, limit: int) -> list[str]:
        result = self._run(
            lambda: self._table("decision_vault").select("id").gte("id", low).lte("id", high).order("id").limit(limit),
            "looking up an id prefix",
            missing_ok=True,
        )
        return [r["id"] for r in result.data] if result is not None else []

    def superseded_into(self, decision_id: str) -> list[dict]:
        result = self._run(
            lambda: self._table("decision_vault").select(SELECT).eq("superseded_by", decision_id).order("id"),
            "reading superseded decisions",
            missing_ok=True,
        )
        return [decode(r) for r in result.data] if result is not None else []

    def history_of(self, decision_id: str) -> list[dict]:
        result = self._run(
            lambda: (
                self._table("decision_history")
                .select("*")
                .eq("decision_id", decision_id)
                .order("changed_at")
                .order("id")
            ),
            "reading a decision's history",
            missing_ok=True,
        )
        return [decode_history(r) for r in result.data] if result is not None else []

    def _insert_ignoring(self, table: str, rows: list[dict], columns: tuple[str, ...], what: str) -> int:
        """Insert the rows not there yet, by id; a retry is safe, as a row that made it is ignored."""
        from postgrest.types import ReturnMethod

        count = 0
        for start in range(0, len(rows), WRITE_BATCH):
            chunk = [{c: r.get(c) for c in columns} for r in rows[start : start + WRITE_BATCH]]
            result = self._run(
                lambda chunk=chunk: self._table(table).upsert(
                    chunk, on_conflict="id", ignore_duplicates=True, returning=ReturnMethod.representation
                ),
                what,
            )
            count += len(result.data or [])
        return count

    def _insert_history(self, rows: list[dict]) -> int:
        if not rows:
            return 0
        return self._insert_ignoring("decision_history", rows, HISTORY_COLUMNS, "recording a decision's history")

    def _pages(self, table: str, decoder, batch: int) -> Iterator[dict]:
        def page(last):
            request = self._table(table).select("*")
            if last is not None:
                request = request.gt("id", last)
            return request.order("id").limit(batch)

        last = None
        while True:
            result = self._run(lambda last=last: page(last), f"reading {table}", missing_ok=True)
            if result is None or not result.data:
                return
            for row in result.data:
                yield decoder(row)
            last = result.data[-1]["id"]

    def iter_history(self, batch: int = 1000) -> Iterator[dict]:
        return self._pages("decision_history", decode_history, batch)

    def upsert_history(self, rows: Iterable[dict]) -> int:
        return self._insert_history(list(rows))

    def links_of(self, decision_id: str) -> list[dict]:
        found: dict[str, dict] = {}
        for column in ("from_id", "to_id"):
            result = self._run(
                lambda column=column: self._table("decision_links").select("*").eq(column, decision_id),
                "reading links",
                missing_ok=True,
            )
            for row in result.data if result is not None else []:
                found[row["id"]] = decode_link(row)
        return sorted(found.values(), key=lambda r: (r["created_at"] or "", r["id"]))

    def add_link(self, row: dict) -> bool:
        return self._insert_ignoring("decision_links", [row], LINK_COLUMNS, "linking decisions") == 1

    def remove_links(self, from_id: str, to_id: str, kind: str | None = None) -> int:
        def build():
            request = self._table("decision_links").delete().eq("from_id", from_id).eq("to_id", to_id)
            return request.eq("kind", kind) if kind is not None else request

        result = self._run(build, "unlinking decisions")
        return len(result.data or [])

    def iter_links(self, batch: int = 1000) -> Iterator[dict]:
        return self._pages("decision_links", decode_link, batch)

    def upsert_links(self, rows: Iterable[dict]) -> int:
        rows = list(rows)
        ends = sorted({r["from_id"] for r in rows} | {r["to_id"] for r in rows})
        present: set[str] = set()
        for start in range(0, len(ends), LOOKUP_BATCH):
            chunk = ends[start : start + LOOKUP_BATCH]
            result = self._run(
                lambda chunk=chunk: self._table("decision_vault").select("id").in_("id", chunk),
                "checking linked decisions",
            )
            present.update(r["id"] for r in result.data)
        # A link to a decision that is not (or no longer) stored is skipped, as a restore may bring one.
        kept = [r for r in rows if r["from_id"] in present and r["to_id"] in present]
        return self._insert_ignoring("decision_links", kept, LINK_COLUMNS, "storing links")
