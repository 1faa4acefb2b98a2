"""A local stand-in for Supabase's REST API: the PostgREST subset the storage backend uses.

Written from PostgREST's documentation (API reference: tables and views, horizontal filtering, ordering,
limits and pagination, upsert with `Prefer: resolution=merge-duplicates`, full-text search filters, errors) and
Supabase's gateway behaviour for API keys. Tables live in memory with typed columns, primary keys, NOT NULL,
CHECK, UNIQUE and foreign-key constraints and stored generated columns, so the same client mistakes fail here
as they would against a real project.

Full-text search imitates PostgreSQL's: to_tsvector with the migration's `angles_search` configuration (english
stop words, Snowball english stemming, accents folded by unaccent), setweight and `||`, and the `fts`, `plfts`,
`phfts` and `wfts` filters (to_tsquery, plainto_, phraseto_ and websearch_to_tsquery). One simplification: the
word parser splits at every non-letter-or-digit, where PostgreSQL's also indexes a hyphenated word whole.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import snowballstemmer

from angles.engines.search_query import STOP_WORDS
from angles.storage.migrations import available

SCHEMA = "public"
# Text search configurations the fake knows: PostgreSQL's english and the vault migration's angles_search.
TS_CONFIGS = ("english", "angles_search")
_STEMMER = snowballstemmer.stemmer("english")
_WORD = re.compile(r"[^\W_]+")


def fake_service_key() -> str:
    """A JWT-shaped key made at run time, like a Supabase service_role key (no token-shaped literal in the repo)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = part(json.dumps({"role": "service_role", "iss": "angles-tests"}).encode())
    return f"{header}.{claims}.{part(os.urandom(32))}"


class RestError(Exception):
    """An error answer: HTTP status plus PostgREST's JSON body."""

    def __init__(self, status: int, code: str | None, message: str, details=None, hint=None):
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "details": details, "hint": hint, "message": message}
        if code is None:
            # Supabase's API gateway answers key problems itself, with only message and hint.
            self.body = {"message": message, "hint": hint}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _timestamp(value, column: str) -> str:
    text = str(value).strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RestError(400, "22007", f'invalid input syntax for type timestamp with time zone: "{value}"') from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat()


def _coerce(kind: str, value, column: str):
    """A JSON (or filter) value as PostgreSQL would store and PostgREST would return it."""
    if value is None:
        return None
    if kind == "uuid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise RestError(400, "22P02", f'invalid input syntax for type uuid: "{value}"') from None
    if kind == "timestamptz":
        return _timestamp(value, column)
    if kind == "date":
        try:
            return date.fromisoformat(str(value)[:10]).isoformat()
        except ValueError:
            raise RestError(400, "22007", f'invalid input syntax for type date: "{value}"') from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "t", "1"):
            return True
        if text in ("false", "f", "0"):
            return False
        raise RestError(400, "22P02", f'invalid input syntax for type boolean: "{value}"')
    if kind in ("int", "serial"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise RestError(400, "22P02", f'invalid input syntax for type integer: "{value}"') from None
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise RestError(400, "22P02", f'invalid input syntax for type double precision: "{value}"') from None
    if kind == "jsonb":
        return value
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _sort_key(kind: str, value):
    if kind == "timestamptz":
        return datetime.fromisoformat(value)
    return value


@dataclass
class Table:
    name: str
    columns: dict[str, str]
    primary_key: tuple[str, ...]
    defaults: dict = field(default_factory=dict)
    not_null: tuple[str, ...] = ()
    checks: dict[str, tuple] = field(default_factory=dict)
    unique: tuple = ()  # unique indexes: a column name or a tuple of names (NULLs allowed many times)
    rows: list[dict] = field(default_factory=list)
    generated: dict = field(default_factory=dict)  # column -> function(row): GENERATED ALWAYS AS (...) STORED
    references: dict = field(default_factory=dict)  # column -> (table, column, on_delete "cascade" | "restrict")
    serial: int = 0
    touch: str | None = None  # a BEFORE UPDATE trigger sets this column to now() when a writer left it unchanged

    def touched(self, old: dict, new: dict) -> dict:
        if self.touch and new.get(self.touch) == old.get(self.touch):
            new[self.touch] = _now()
        return new

    def generate(self, row: dict) -> dict:
        for column, compute in self.generated.items():
            row[column] = compute(row)
        return row

    def key(self, row: dict) -> tuple:
        return tuple(row.get(c) for c in self.primary_key)

    def default(self, column: str):
        kind = self.columns[column]
        if kind == "serial":
            self.serial += 1
            return self.serial
        value = self.defaults.get(column)
        return value() if callable(value) else json.loads(json.dumps(value)) if value is not None else None

    def check(self, row: dict) -> None:
        for column in self.not_null:
            if row.get(column) is None:
                raise RestError(
                    400,
                    "23502",
                    f'null value in column "{column}" of relation "{self.name}" violates not-null constraint',
                    details=f"Failing row contains ({', '.join(str(row.get(c)) for c in self.columns)}).",
                )
        for column, allowed in self.checks.items():
            if row.get(column) is not None and row[column] not in allowed:
                raise RestError(
                    400,
                    "23514",
                    f'new row for relation "{self.name}" violates check constraint "{self.name}_{column}_check"',
                )


def _lexemes(text: str) -> list[str | None]:
    """The angles_search parser and dictionaries: one entry per word, None for a stop word (it keeps its place)."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return [None if w in STOP_WORDS else _STEMMER.stemWord(w) for w in _WORD.findall(folded)]


def to_tsvector(text: str, weight: str = "D") -> dict[str, list[tuple[int, str]]]:
    vector: dict[str, list[tuple[int, str]]] = {}
    for position, lexeme in enumerate(_lexemes(text or ""), 1):
        if lexeme is not None:
            vector.setdefault(lexeme, []).append((position, weight))
    return vector


def concat_tsvectors(*vectors: dict) -> dict:
    """tsvector || tsvector: the right side's positions move past the left side's largest."""
    out: dict[str, list[tuple[int, str]]] = {}
    shift = 0
    for vector in vectors:
        top = 0
        for lexeme, places in vector.items():
            out.setdefault(lexeme, []).extend((p + shift, w) for p, w in places)
            top = max([top, *(p for p, _ in places)])
        shift += top
    return out


def tsvector_text(vector: dict | None) -> str | None:
    """A tsvector as PostgreSQL prints it (and PostgREST returns it): 'lexeme':1A,4 ..., D weights unmarked."""
    if vector is None:
        return None
    parts = []
    for lexeme in sorted(vector):
        places = ",".join(f"{p}{w if w != 'D' else ''}" for p, w in sorted(vector[lexeme]))
        parts.append(f"'{lexeme}':{places}")
    return " ".join(parts)


def _search_vector(row: dict) -> dict:
    """decision_vault.search_vector as migrations/postgres/0004 generates it."""
    summary = row.get("ai_analysis").get("summary") if isinstance(row.get("ai_analysis"), dict) else None
    tags = (
        json.dumps(row.get("tags"), ensure_ascii=False, separators=(", ", ": ")) if row.get("tags") is not None else ""
    )
    return concat_tsvectors(
        to_tsvector(row.get("decision") or "", "A"),
        to_tsvector(tags, "B"),
        to_tsvector(row.get("comment") or "", "C"),
        to_tsvector(summary if isinstance(summary, str) else "" if summary is None else json.dumps(summary), "D"),
    )


def _phrase(words: list[str | None]) -> tuple | None:
    """A phrase node: lexemes with their offsets from the first (stop words leave gaps, as <N> distances)."""
    placed = [(offset, lexeme) for offset, lexeme in enumerate(words) if lexeme is not None]
    if not placed:
        return None
    first = placed[0][0]
    if len(placed) == 1:
        return ("lex", placed[0][1])
    return ("phrase", tuple((offset - first, lexeme) for offset, lexeme in placed))


def _and(nodes: list) -> tuple | None:
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        return None
    out = nodes[0]
    for node in nodes[1:]:
        out = ("and", out, node)
    return out


def _or(nodes: list) -> tuple | None:
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        return None
    out = nodes[0]
    for node in nodes[1:]:
        out = ("or", out, node)
    return out


def websearch_to_tsquery(text: str) -> tuple | None:
    """websearch_to_tsquery: "phrases", -negation, `or` (any case) as OR, other words ANDed; & binds before |."""
    groups: list[list] = [[]]
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negate = text[i] == "-"
        if negate:
            i += 1
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            node = _phrase(_lexemes(text[i + 1 : end]))
            i = end + 1
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] != '"':
                end += 1
            word = text[i:end]
            i = end
            if word.lower() == "or" and not negate:
                if groups[-1]:
                    groups.append([])
                continue
            node = _phrase(_lexemes(word))
        if node is not None:
            groups[-1].append(("not", node) if negate else node)
    return _or([_and(g) for g in groups])


def plainto_tsquery(text: str) -> tuple | None:
    return _and([("lex", lexeme) for lexeme in _lexemes(text) if lexeme is not None])


def phraseto_tsquery(text: str) -> tuple | None:
    return _phrase(_lexemes(text))


def tsquery_matches(node: tuple | None, vector: dict) -> bool:
    """tsvector @@ tsquery; an empty query (stop words only) matches nothing, as PostgreSQL's does."""
    if node is None:
        return False
    kind = node[0]
    if kind == "lex":
        return node[1] in vector
    if kind == "not":
        return not tsquery_matches(node[1], vector)
    if kind == "and":
        return tsquery_matches(node[1], vector) and tsquery_matches(node[2], vector)
    if kind == "or":
        return tsquery_matches(node[1], vector) or tsquery_matches(node[2], vector)
    offsets = node[1]
    starts = {p for p, _ in vector.get(offsets[0][1], [])}
    return any(
        all((start + off) in {p for p, _ in vector.get(lex, [])} for off, lex in offsets[1:]) for start in starts
    )


_TEXT_SEARCH = re.compile(r"(fts|plfts|phfts|wfts)(?:\(([^)]*)\))?")
_PARSERS = {"plfts": plainto_tsquery, "phfts": phraseto_tsquery, "wfts": websearch_to_tsquery}


def decision_vault() -> Table:
    cols = {
        "id": "uuid",
        "decision": "text",
        "date": "date",
        "type": "text",
        "active": "bool",
        "comment": "text",
        "synced": "bool",
        "synced_at": "timestamptz",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
        "priority": "text",
        "tags": "jsonb",
        "type_source": "text",
        "priority_source": "text",
        "ai_analysis": "jsonb",
        "ai_hash": "text",
        "notion_page_id": "text",
        "notion_sync_hash": "text",
        "notion_last_edited": "timestamptz",
        "notion_attempted_at": "timestamptz",
        "superseded_by": "uuid",
        "deleted_at": "timestamptz",
        "search_vector": "tsvector",
    }
    types = ("strategy", "technical", "architecture", "process", "security", "ethical", "product", "other")
    return Table(
        "decision_vault",
        cols,
        ("id",),
        defaults={
            "id": lambda: str(uuid.uuid4()),
            "date": lambda: date.today().isoformat(),
            "active": True,
            "synced": False,
            "created_at": _now,
            "updated_at": _now,
            "tags": [],
            "type_source": "person",
        },
        not_null=("id", "decision", "date", "type", "active", "synced", "tags", "type_source", "created_at"),
        checks={"type": types, "priority": ("P0", "P1", "P2")},
        unique=("notion_page_id",),
        touch="updated_at",
        generated={"search_vector": _search_vector},
        references={"superseded_by": ("decision_vault", "id", "restrict")},
    )


def schema_tables() -> list[Table]:
    """The tables migrations/postgres creates, as PostgREST would expose them."""
    return [
        decision_vault(),
        Table(
            "agent_activity",
            {
                "id": "serial",
                "agent_name": "text",
                "action": "text",
                "details": "text",
                "status": "text",
                "created_at": "timestamptz",
                "started_at": "timestamptz",
                "finished_at": "timestamptz",
                "duration_s": "float",
                "host": "text",
            },
            ("id",),
            defaults={"status": "completed", "created_at": _now},
            not_null=("agent_name", "action"),
        ),
        Table(
            "sync_state",
            {"key": "text", "value": "text", "updated_at": "timestamptz"},
            ("key",),
            not_null=("key",),
        ),
        Table(
            "job_slots",
            {"job": "text", "slot": "timestamptz", "host": "text", "claimed_at": "timestamptz"},
            ("job", "slot"),
            not_null=("job", "slot"),
        ),
        Table(
            "mcp_tokens",
            {
                "name": "text",
                "scope": "text",
                "token_hash": "text",
                "created_at": "timestamptz",
                "last_used_at": "timestamptz",
                "revoked_at": "timestamptz",
            },
            ("name",),
            not_null=("name", "scope", "token_hash", "created_at"),
            checks={"scope": ("read", "write")},
            unique=("token_hash",),
        ),
        Table(
            "mcp_write_counts",
            {"token_name": "text", "window_start": "timestamptz", "writes": "int"},
            ("token_name", "window_start"),
            not_null=("token_name", "window_start", "writes"),
        ),
        Table(
            "decision_history",
            {
                "id": "uuid",
                "decision_id": "uuid",
                "changed_at": "timestamptz",
                "source": "text",
                "reason": "text",
                "changed": "jsonb",
                "previous": "jsonb",
            },
            ("id",),
            defaults={"id": lambda: str(uuid.uuid4()), "changed_at": _now, "changed": []},
            not_null=("id", "decision_id", "changed_at", "source", "changed", "previous"),
        ),
        Table(
            "decision_links",
            {
                "id": "uuid",
                "from_id": "uuid",
                "to_id": "uuid",
                "kind": "text",
                "source": "text",
                "created_at": "timestamptz",
            },
            ("id",),
            defaults={"created_at": _now},
            not_null=("id", "from_id", "to_id", "kind", "created_at"),
            checks={"kind": ("depends_on", "relates_to", "conflicts_with", "refines")},
            unique=(("from_id", "to_id", "kind"),),
            references={
                "from_id": ("decision_vault", "id", "cascade"),
                "to_id": ("decision_vault", "id", "cascade"),
            },
        ),
        Table(
            "schema_migrations",
            {"version": "int", "name": "text", "checksum": "text", "applied_at": "timestamptz"},
            ("version",),
            defaults={"applied_at": _now},
            not_null=("version", "name", "checksum"),
        ),
    ]


_FILTER_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "is", "cs")


def _split_list(text: str) -> list[str]:
    """The items of an `in.(a,"b,c")` list, honouring PostgREST's double quotes."""
    items, current, quoted, escaped, was_quoted = [], [], False, False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
            was_quoted = True
        elif char == "," and not quoted:
            items.append(("".join(current), was_quoted))
            current, was_quoted = [], False
        else:
            current.append(char)
    items.append(("".join(current), was_quoted))
    return [value if q else value.strip() for value, q in items]


class FakePostgrest:
    """A threaded HTTP server on 127.0.0.1 answering /rest/v1/<table> like PostgREST behind Supabase's gateway."""

    def __init__(self, key: str, *, max_rows: int | None = None, rpm: float | None = None):
        """`rpm`: enforce a request rate as Supabase's gateway does (429 with Retry-After above it); None: no limit."""
        self.key = key
        self.max_rows = max_rows
        self.rpm = rpm
        # A bucket of one second's worth of requests, refilled at rpm / 60 per second.
        self.allowance = max(1.0, (rpm or 0) / 60.0)
        self.allowance_at = time.monotonic()
        self.rate_limited = 0
        self.tables: dict[str, Table] = {}
        self.lock = threading.RLock()
        self.requests: list[dict] = []
        self.failures: list[tuple[int, dict, dict]] = []
        self.server: ThreadingHTTPServer | None = None

    # test controls

    def create_schema(self, *, migrated: bool = True) -> None:
        """Create the vault's tables; with migrated=True also record every migration as applied."""
        with self.lock:
            for table in schema_tables():
                self.tables[table.name] = table
            if migrated:
                for m in available("postgres"):
                    self.tables["schema_migrations"].rows.append(
                        {"version": m.version, "name": m.name, "checksum": m.checksum, "applied_at": _now()}
                    )

    def fail_next(self, status: int, body: dict | None = None, *, times: int = 1, headers: dict | None = None):
        """Answer the next requests with an error (a 503, a 429 with Retry-After, ...)."""
        with self.lock:
            for _ in range(times):
                self.failures.append((status, body or {"message": "Service Unavailable"}, headers or {}))

    def rows(self, table: str) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.tables[table].rows]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakePostgrest:
        fake = self

        class Handler(_Handler):
            app = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-postgrest").start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # request handling

    def handle(self, method: str, path: str, query: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        self.requests.append({"method": method, "path": path, "query": query, "headers": dict(headers)})
        if self.failures:
            status, payload, extra = self.failures.pop(0)
            return status, {"Content-Type": "application/json", **extra}, json.dumps(payload).encode()
        wait = self._over_rate()
        if wait is not None:
            headers = {"Content-Type": "application/json", "Retry-After": str(max(1, math.ceil(wait)))}
            return 429, headers, json.dumps({"message": "API rate limit exceeded"}).encode()
        try:
            self._authorise(headers)
            match = re.fullmatch(r"/rest/v1/([A-Za-z_][A-Za-z0-9_]*)", path)
            if not match:
                raise RestError(404, None, "no Route matched with those values")
            with self.lock:
                table = self.tables.get(match.group(1))
                if table is None:
                    raise RestError(
                        404,
                        "PGRST205",
                        f"Could not find the table '{SCHEMA}.{match.group(1)}' in the schema cache",
                    )
                params = parse_qsl(query, keep_blank_values=True)
                prefer = {
                    p.split("=", 1)[0].strip(): (p.split("=", 1) + [""])[1].strip()
                    for p in ",".join(headers.get_all("Prefer") or []).split(",")
                    if p.strip()
                }
                if method in ("GET", "HEAD"):
                    return self._read(table, params, headers, prefer, head=method == "HEAD")
                if method == "POST":
                    return self._insert(table, params, prefer, body)
                if method == "PATCH":
                    return self._update(table, params, prefer, body)
                if method == "DELETE":
                    return self._delete(table, params, prefer)
                raise RestError(405, "PGRST117", f"Unsupported HTTP method: {method}")
        except RestError as err:
            return err.status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(err.body).encode()

    def _over_rate(self) -> float | None:
        """None when the request is within the rate; else the seconds until it would be."""
        if not self.rpm:
            return None
        rate = self.rpm / 60.0
        with self.lock:
            now = time.monotonic()
            self.allowance = min(max(1.0, rate), self.allowance + (now - self.allowance_at) * rate)
            self.allowance_at = now
            if self.allowance >= 1.0:
                self.allowance -= 1.0
                return None
            self.rate_limited += 1
            return (1.0 - self.allowance) / rate

    def _authorise(self, headers) -> None:
        apikey = headers.get("apikey")
        if not apikey:
            raise RestError(
                401, None, "No API key found in request", hint="No `apikey` request header or url param was found."
            )
        if apikey != self.key:
            raise RestError(
                401, None, "Invalid API key", hint="Double check your Supabase `anon` or `service_role` API key."
            )
        auth = headers.get("Authorization")
        if auth and auth != f"Bearer {self.key}":
            raise RestError(401, "PGRST301", "JWSError JWSInvalidSignature")

    def _column(self, table: Table, name: str) -> str:
        if name not in table.columns:
            raise RestError(400, "42703", f"column {table.name}.{name} does not exist")
        return name

    def _filters(self, table: Table, params: list[tuple[str, str]]):
        reserved = {"select", "order", "limit", "offset", "on_conflict", "columns"}
        tests = []
        for name, raw in params:
            if name in reserved:
                continue
            column = self._column(table, name.strip('"'))
            negate = raw.startswith("not.")
            expr = raw[4:] if negate else raw
            op, _, value = expr.partition(".")
            search = _TEXT_SEARCH.fullmatch(op)
            if search:
                tests.append((column, "@@", self._tsquery(table, column, search, value), negate))
                continue
            if op not in _FILTER_OPS or not _:
                raise RestError(400, "PGRST100", f'"failed to parse filter ({raw})" (line 1, column 1)')
            tests.append((column, op, value, negate))
        kinds = table.columns

        def match(row: dict) -> bool:
            for column, op, value, negate in tests:
                kind = kinds[column]
                current = row.get(column)
                if op == "is":
                    wanted = {"null": None, "true": True, "false": False}.get(value.lower(), "bad")
                    if wanted == "bad":
                        raise RestError(400, "PGRST100", f'"failed to parse filter (is.{value})" (line 1, column 1)')
                    result = current is wanted if wanted is None else current == wanted
                elif current is None:
                    return False
                elif op == "@@":
                    result = tsquery_matches(value, current)
                elif op == "cs":
                    result = self._contains(kind, column, current, value)
                elif op == "in":
                    if not (value.startswith("(") and value.endswith(")")):
                        raise RestError(400, "PGRST100", f'"failed to parse filter (in.{value})" (line 1, column 1)')
                    options = {_coerce(kind, v, column) for v in _split_list(value[1:-1])}
                    result = current in options
                else:
                    other = _sort_key(kind, _coerce(kind, value, column))
                    mine = _sort_key(kind, current)
                    result = {
                        "eq": mine == other,
                        "neq": mine != other,
                        "gt": mine > other,
                        "gte": mine >= other,
                        "lt": mine < other,
                        "lte": mine <= other,
                    }[op]
                if result == negate:
                    return False
            return True

        return match

    def _tsquery(self, table: Table, column: str, search: re.Match, text: str):
        kind, config = search.group(1), search.group(2) or "english"
        if table.columns[column] != "tsvector":
            raise RestError(
                404, "42883", f"operator does not exist: {table.columns[column]} @@ tsquery", hint="No operator matches"
            )
        if config not in TS_CONFIGS:
            raise RestError(400, "42704", f'text search configuration "{config}" does not exist')
        if kind == "fts":
            # to_tsquery's own operator syntax is not imitated here; nothing in this project sends it.
            raise RestError(400, "PGRST100", "the fake PostgREST does not implement the fts (to_tsquery) filter")
        return _PARSERS[kind](text)

    @staticmethod
    def _contains(kind: str, column: str, current, value: str) -> bool:
        if kind != "jsonb":
            raise RestError(404, "42883", f"operator does not exist: {kind} @> unknown")
        try:
            wanted = json.loads(value)
        except ValueError:
            raise RestError(400, "22P02", "invalid input syntax for type json") from None
        if isinstance(wanted, list):
            return isinstance(current, list) and all(item in current for item in wanted)
        if isinstance(wanted, dict):
            return isinstance(current, dict) and all(current.get(k) == v for k, v in wanted.items())
        return current == wanted

    def _select(self, table: Table, params) -> list[str]:
        raw = dict(params).get("select", "*") or "*"
        if raw.strip() == "*":
            return list(table.columns)
        return [self._column(table, c.strip().strip('"')) for c in raw.split(",") if c.strip()]

    def _project(self, rows: list[dict], columns: list[str], table: Table | None = None) -> list[dict]:
        vectors = [c for c in columns if table is not None and table.columns.get(c) == "tsvector"]
        out = [{c: row.get(c) for c in columns} for row in rows]
        for row in out:
            for column in vectors:
                row[column] = tsvector_text(row[column])
        return out

    def _read(self, table: Table, params, headers, prefer, *, head: bool):
        columns = self._select(table, params)
        match = self._filters(table, params)
        rows = [r for r in table.rows if match(r)]
        order = dict(params).get("order")
        if order:
            for term in reversed(order.split(",")):
                parts = term.split(".")
                column = self._column(table, parts[0])
                desc = "desc" in parts[1:]
                kind = table.columns[column]
                present = [r for r in rows if r.get(column) is not None]
                missing = [r for r in rows if r.get(column) is None]
                present.sort(key=lambda r, c=column, k=kind: _sort_key(k, r[c]), reverse=desc)
                nulls_first = "nullsfirst" in parts[1:] or (desc and "nullslast" not in parts[1:])
                rows = missing + present if nulls_first else present + missing
        total = len(rows)
        args = dict(params)
        offset, limit = 0, None
        if "limit" in args or "offset" in args:
            try:
                offset = int(args.get("offset") or 0)
                limit = int(args["limit"]) if "limit" in args else None
            except ValueError:
                raise RestError(400, "PGRST100", "limit and offset must be integers") from None
        elif headers.get("Range"):
            m = re.fullmatch(r"\s*(\d+)-(\d*)\s*", headers.get("Range"))
            if m:
                offset = int(m.group(1))
                limit = int(m.group(2)) - offset + 1 if m.group(2) else None
        if self.max_rows is not None:
            limit = self.max_rows if limit is None else min(limit, self.max_rows)
        if offset > 0 and offset >= total and total > 0:
            raise RestError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                details=f"An offset of {offset} was requested, but there are only {total} rows.",
            )
        page = rows[offset : offset + limit if limit is not None else None]
        count = str(total) if prefer.get("count") in ("exact", "planned", "estimated") else "*"
        span = f"{offset}-{offset + len(page) - 1}" if page else "*"
        status = 206 if count != "*" and len(page) < total else 200
        out_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Range": f"{span}/{count}",
            "Range-Unit": "items",
        }
        return status, out_headers, b"" if head else json.dumps(self._project(page, columns, table)).encode()

    def _payload(self, table: Table, params, body: bytes) -> tuple[list[dict], list[str]]:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise RestError(400, "PGRST102", "Empty or invalid json") from None
        rows = data if isinstance(data, list) else [data]
        if not all(isinstance(r, dict) for r in rows):
            raise RestError(400, "PGRST102", "Empty or invalid json")
        columns_param = dict(params).get("columns")
        if columns_param:
            columns = [c.strip().strip('"') for c in columns_param.split(",")]
        else:
            columns = list(rows[0]) if rows else []
            if any(set(r) != set(columns) for r in rows):
                raise RestError(400, "PGRST102", "All object keys must match")
        for c in columns:
            if c not in table.columns:
                raise RestError(
                    400, "PGRST204", f"Could not find the '{c}' column of '{table.name}' in the schema cache"
                )
            if c in table.generated:
                raise RestError(
                    400,
                    "428C9",
                    f'cannot insert a non-DEFAULT value into column "{c}"',
                    details=f'Column "{c}" is a generated column.',
                )
        return rows, columns

    def _unique_clash(self, table: Table, rows: list[dict], candidate: dict, skip: dict | None) -> None:
        for index in table.unique:
            names = index if isinstance(index, tuple) else (index,)
            value = tuple(candidate.get(c) for c in names)
            if any(v is None for v in value):
                continue
            for other in rows:
                if other is not skip and tuple(other.get(c) for c in names) == value:
                    raise RestError(
                        409,
                        "23505",
                        f'duplicate key value violates unique constraint "{table.name}_{"_".join(names)}_key"',
                        details=f"Key ({', '.join(names)})=({', '.join(map(str, value))}) already exists.",
                    )

    def _check_references(self, table: Table, rows: list[dict], written: list[dict]) -> None:
        """Foreign keys, checked when the statement ends (a row may name another of the same request)."""
        for column, (target, target_column, _) in table.references.items():
            pool = rows if target == table.name else self.tables[target].rows
            present = {r.get(target_column) for r in pool}
            for row in written:
                value = row.get(column)
                if value is not None and value not in present:
                    raise RestError(
                        409,
                        "23503",
                        f'insert or update on table "{table.name}" violates foreign key constraint'
                        f' "{table.name}_{column}_fkey"',
                        details=f'Key ({column})=({value}) is not present in table "{target}".',
                    )

    def _cascade(self, table: Table, gone: list[dict], remaining: list[dict]) -> dict[str, list[dict]]:
        """What deleting `gone` from `table` leaves in every table that references it (ON DELETE rules)."""
        results: dict[str, list[dict]] = {table.name: remaining}
        for other in self.tables.values():
            for column, (target, target_column, rule) in other.references.items():
                if target != table.name:
                    continue
                ids = {r.get(target_column) for r in gone}
                current = results.get(other.name, other.rows)
                hit = [r for r in current if r.get(column) in ids]
                if not hit:
                    continue
                if rule == "restrict":
                    raise RestError(
                        409,
                        "23503",
                        f'update or delete on table "{table.name}" violates foreign key constraint'
                        f' "{other.name}_{column}_fkey" on table "{other.name}"',
                        details=f"Key ({target_column})=({hit[0][column]}) is still referenced"
                        f' from table "{other.name}".',
                    )
                results[other.name] = [r for r in current if r.get(column) not in ids]
        return results

    def _insert(self, table: Table, params, prefer, body: bytes):
        payload, columns = self._payload(table, params, body)
        resolution = prefer.get("resolution")
        conflict = tuple(c.strip() for c in (dict(params).get("on_conflict") or ",".join(table.primary_key)).split(","))
        missing_default = prefer.get("missing") == "default"
        # Work on a copy: one request is one transaction, all or nothing.
        rows = [dict(r) for r in table.rows]
        index = {tuple(r.get(c) for c in conflict): r for r in rows}
        serial = table.serial
        written = []
        for item in payload:
            values = {c: _coerce(table.columns[c], item.get(c), c) for c in columns if c in item or not missing_default}
            key = tuple(values.get(c) for c in conflict)
            existing = index.get(key) if all(k is not None for k in key) else None
            if existing is not None:
                if resolution == "merge-duplicates":
                    merged = table.generate(table.touched(existing, {**existing, **values}))
                    table.check(merged)
                    self._unique_clash(table, rows, merged, existing)
                    existing.update(merged)
                    written.append(existing)
                    continue
                if resolution == "ignore-duplicates":
                    continue
                details = ", ".join(str(k) for k in key)
                table.serial = serial
                raise RestError(
                    409,
                    "23505",
                    f'duplicate key value violates unique constraint "{table.name}_pkey"',
                    details=f"Key ({', '.join(conflict)})=({details}) already exists.",
                )
            row = {}
            for column in table.columns:
                if column in values:
                    row[column] = values[column]
                else:
                    row[column] = table.default(column)
            table.generate(row)
            try:
                table.check(row)
                self._unique_clash(table, rows, row, None)
            except RestError:
                table.serial = serial
                raise
            rows.append(row)
            index[tuple(row.get(c) for c in conflict)] = row
            written.append(row)
        try:
            self._check_references(table, rows, written)
        except RestError:
            table.serial = serial
            raise
        table.rows = rows
        return self._written(table, params, prefer, written, 201)

    def _written(self, table: Table, params, prefer, written: list[dict], status: int):
        headers = {"Content-Range": f"*/{len(written)}"}
        if prefer.get("return") == "representation":
            headers["Content-Type"] = "application/json; charset=utf-8"
            out = self._project(written, self._select(table, params), table)
            return (200 if status == 204 else status), headers, json.dumps(out).encode()
        return (204 if status == 204 else status), headers, b""

    def _update(self, table: Table, params, prefer, body: bytes):
        payload, columns = self._payload(table, params, body)
        if len(payload) != 1:
            raise RestError(400, "PGRST102", "Empty or invalid json")
        values = {c: _coerce(table.columns[c], payload[0].get(c), c) for c in columns}
        match = self._filters(table, params)
        rows = [dict(r) for r in table.rows]
        written = []
        for row in rows:
            if match(row):
                merged = table.generate(table.touched(row, {**row, **values}))
                table.check(merged)
                self._unique_clash(table, rows, merged, row)
                row.update(merged)
                written.append(row)
        self._check_references(table, rows, written)
        table.rows = rows
        return self._written(table, params, prefer, written, 204)

    def _delete(self, table: Table, params, prefer):
        match = self._filters(table, params)
        gone = [r for r in table.rows if match(r)]
        for name, rows in self._cascade(table, gone, [r for r in table.rows if not match(r)]).items():
            self.tables[name].rows = rows
        return self._written(table, params, prefer, gone, 204)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    app: FakePostgrest

    def log_message(self, *args):
        pass

    def _serve(self):
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.app.handle(self.command, parts.path, parts.query, self.headers, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815 - http.server dispatches by name
