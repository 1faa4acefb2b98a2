"""A local Notion API (version 2025-09-03) written from Notion's public reference, for tests.

Routes: users/me, databases retrieve, data sources retrieve/update/query, pages create/retrieve/update.
It checks what Notion checks (Bearer token, Notion-Version header, 2000-unit rich text, 100-item arrays,
property names and types against the data source's schema, relations to pages of the related data source),
answers with Notion's error bodies, rate
limits like Notion (429 rate_limited with Retry-After above the configured average), rounds
last_edited_time down to the minute, and can inject faults (429, 500, 502, 503, 529, dropped connections).
Its clock is replaceable (`clock`), so tests can put it ahead of or behind the vault's, or simulate time.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "2025-09-03"
KNOWN_VERSIONS = ("2021-08-16", "2022-02-22", "2022-06-28", VERSION)
TEXT_LIMIT = 2000
ARRAY_LIMIT = 100
OPTION_LIMIT = 100
BOT_ID = "b0b0b0b0-0000-4000-8000-000000000001"
PERSON_ID = "9e750000-0000-4000-8000-000000000002"

ERROR_CODES = {
    400: "validation_error",
    401: "unauthorized",
    404: "object_not_found",
    409: "conflict_error",
    429: "rate_limited",
    500: "internal_server_error",
    503: "service_unavailable",
    504: "gateway_timeout",
    529: "service_overload",
}
ERROR_MESSAGES = {
    401: "API token is invalid.",
    409: "Conflict occurred while saving. Please try again.",
    429: "You have been rate limited. Please try again in a few minutes.",
    500: "Unexpected error occurred.",
    503: "Notion is unavailable, please try again later.",
    504: "Notion timed out while completing this request.",
    529: "Notion is overloaded, please try again later.",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str | None = None, code: str | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "internal_server_error")
        self.message = message or ERROR_MESSAGES.get(status, "Error.")
        self.headers = headers or {}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


def parse_time(text: str) -> datetime:
    text = text.strip()
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def rich_item(content: str) -> dict:
    return {
        "type": "text",
        "text": {"content": content, "link": None},
        "annotations": {
            "bold": False,
            "italic": False,
            "strikethrough": False,
            "underline": False,
            "code": False,
            "color": "default",
        },
        "plain_text": content,
        "href": None,
    }


# Built at run time so no token-shaped literal is committed.
FAKE_TOKEN = "ntn_" + "testtoken0000000000000000000000000000001"


class FakeNotion:
    """State and behaviour of one Notion workspace, served on 127.0.0.1."""

    def __init__(self, *, token: str = FAKE_TOKEN, rps: float = 3.0, burst=None):
        self.token = token
        self.lock = threading.RLock()
        self.databases: dict[str, dict] = {}
        self.sources: dict[str, dict] = {}
        self.pages: dict[str, dict] = {}
        self.order: list[str] = []
        self.log: list[tuple[str, str, int]] = []
        self.stamps: list[float] = []
        self.faults: list[dict] = []
        self.delay = 0.0  # seconds every answer waits, like a Notion that is slow to respond
        self.retry_after = 1
        # True: creating a relation property fails as it does when the related database is not shared.
        self.refuse_relations = False
        self.set_rate(rps, burst)
        # Called with (method, route, result) after a write is applied, before the answer goes out.
        self.after_write = None
        # Notion's own clock: page times come from it, so a test can skew it against the vault's or simulate it.
        self.clock = lambda: datetime.now(UTC)
        self.server: ThreadingHTTPServer | None = None

    # lifecycle

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            state = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.base_url

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        """Forget every database, page, logged request and pending fault (one server, many generated runs)."""
        with self.lock:
            self.databases.clear()
            self.sources.clear()
            self.pages.clear()
            self.order.clear()
            self.log.clear()
            self.stamps.clear()
            self.faults.clear()
            self.after_write = None

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # knobs for tests

    def set_rate(self, rps: float, burst=None) -> None:
        with self.lock:
            self.rps = float(rps)
            self.burst = float(burst if burst is not None else max(3.0, self.rps))
            self.bucket = self.burst
            self.bucket_at = time.monotonic()

    def inject(self, kind, count: int = 1, *, method: str | None = None, route: str | None = None, after=False):
        """Answer the next `count` matching requests with a fault: a status code or "drop" (close, no answer).

        With after=True the request is applied first, then the answer is lost or replaced by the fault.
        """
        with self.lock:
            for _ in range(count):
                self.faults.append({"kind": kind, "method": method, "route": route, "after": after})

    def count(self, method: str | None = None, route: str | None = None, status: int | None = None) -> int:
        with self.lock:
            return sum(
                1
                for m, r, s in self.log
                if (method is None or m == method) and (route is None or r == route) and (status is None or s == status)
            )

    @property
    def writes(self) -> int:
        return self.count("POST", "/v1/pages") + self.count("PATCH", "/v1/pages/{id}")

    # workspace set-up

    def add_database(self, properties: dict | None = None, *, title_property: str = "Name") -> str:
        """A database with one data source; `properties` maps name -> type (e.g. {"Decision": "rich_text"})."""
        with self.lock:
            database_id, source_id = str(uuid.uuid4()), str(uuid.uuid4())
            self.databases[database_id] = {"id": database_id, "sources": [source_id], "created": datetime.now(UTC)}
            schema = {title_property: self._property(title_property, "title", {})}
            for name, kind in (properties or {}).items():
                # A "relation" here relates the data source to itself.
                config = {"data_source_id": source_id, "database_id": database_id} if kind == "relation" else {}
                schema[name] = self._property(name, kind, config)
            self.sources[source_id] = {"id": source_id, "database_id": database_id, "properties": schema}
            return database_id

    def data_source_of(self, database_id: str) -> str:
        return self.databases[database_id]["sources"][0]

    def schema(self, database_id: str) -> dict:
        with self.lock:
            return {n: p["type"] for n, p in self.sources[self.data_source_of(database_id)]["properties"].items()}

    def _property(self, name: str, kind: str, config: dict) -> dict:
        prop = {"id": uuid.uuid4().hex[:4], "name": name, "type": kind, kind: dict(config or {})}
        if kind in ("select", "multi_select"):
            prop[kind] = {"options": [self._option(o["name"]) for o in (config or {}).get("options", [])]}
        if kind == "relation":
            prop[kind] = {
                "data_source_id": config["data_source_id"],
                "database_id": config["database_id"],
                "type": "single_property",
                "single_property": {},
            }
        return prop

    def _relation_config(self, name: str, config) -> dict:
        """A relation's schema as sent (data_source_id, or database_id before 2025-09-03), checked like Notion."""
        where = f"body.properties.{name}.relation"
        if not isinstance(config, dict):
            raise ApiError(400, f"body failed validation: {where} should be an object.")
        kind = config.get("type", "single_property")
        if kind not in ("single_property", "dual_property"):
            raise ApiError(400, f"body failed validation: {where}.type should be single_property or dual_property.")
        source_id = config.get("data_source_id")
        if source_id is None and config.get("database_id") in self.databases:
            source_id = self.databases[config["database_id"]]["sources"][0]
        if not source_id:
            raise ApiError(400, f"body failed validation: {where}.data_source_id should be defined.")
        if source_id not in self.sources or self.refuse_relations:
            # What an integration sees when the related database is not shared with it.
            raise _not_found(source_id, "data source")
        return {"data_source_id": source_id, "database_id": self.sources[source_id]["database_id"]}

    @staticmethod
    def _option(name: str) -> dict:
        return {"id": uuid.uuid4().hex[:4], "name": name, "color": "default"}

    # "a person in the Notion app"

    def create_as_person(self, database_id: str, values: dict, when: datetime | None = None) -> str:
        with self.lock:
            source = self.sources[self.data_source_of(database_id)]
            props = self._apply_values(source, {}, self._simple(source, values))
            page = self._new_page(source, props, PERSON_ID, when)
            return page["id"]

    def edit_as_person(self, page_id: str, values: dict, when: datetime | None = None) -> None:
        with self.lock:
            page = self.pages[page_id]
            source = self.sources[page["parent"]["data_source_id"]]
            page["properties"] = self._apply_values(source, page["properties"], self._simple(source, values))
            self._touch(page, PERSON_ID, when)

    def trash_as_person(self, page_id: str, in_trash: bool = True) -> None:
        """Move a page to the trash in the app (or restore it from there); like any edit it moves last_edited_time."""
        with self.lock:
            page = self.pages[page_id]
            page["in_trash"] = page["archived"] = in_trash
            self._touch(page, PERSON_ID, None)

    def _simple(self, source: dict, values: dict) -> dict:
        """Plain Python values as request-shaped property values."""
        out = {}
        for name, value in values.items():
            kind = source["properties"][name]["type"]
            if kind in ("title", "rich_text"):
                text = value or ""
                out[name] = {
                    kind: [{"text": {"content": text[i : i + TEXT_LIMIT]}} for i in range(0, len(text), TEXT_LIMIT)]
                }
            elif kind == "select":
                out[name] = {"select": {"name": value} if value else None}
            elif kind == "multi_select":
                out[name] = {"multi_select": [{"name": v} for v in value]}
            elif kind == "date":
                out[name] = {"date": {"start": value} if value else None}
            elif kind == "checkbox":
                out[name] = {"checkbox": bool(value)}
            elif kind == "relation":
                out[name] = {"relation": [{"id": v} for v in value]}
        return out

    # reading the workspace in tests

    def live_pages(self) -> list[dict]:
        with self.lock:
            return [self.pages[i] for i in self.order if not self.pages[i]["in_trash"]]

    def text(self, page: dict, name: str) -> str:
        prop = page["properties"].get(name) or {}
        return "".join(i["plain_text"] for i in prop.get(prop.get("type"), []) or [])

    def value(self, page: dict, name: str):
        prop = page["properties"].get(name) or {}
        kind = prop.get("type")
        raw = prop.get(kind)
        if kind in ("title", "rich_text"):
            return self.text(page, name)
        if kind == "select":
            return raw["name"] if raw else None
        if kind == "multi_select":
            return [o["name"] for o in raw]
        if kind == "date":
            return raw["start"] if raw else None
        if kind == "relation":
            return [item["id"] for item in raw]
        return raw

    def pages_by_external_id(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for page in self.live_pages():
            out.setdefault(self.text(page, "External ID"), []).append(page)
        return out

    # request handling

    def _take_token(self) -> float | None:
        """None when the request may go ahead, else seconds until it may."""
        with self.lock:
            now = time.monotonic()
            self.bucket = min(self.burst, self.bucket + (now - self.bucket_at) * self.rps)
            self.bucket_at = now
            if self.bucket >= 1.0:
                self.bucket -= 1.0
                return None
            return (1.0 - self.bucket) / self.rps

    def _fault_for(self, method: str, route: str) -> dict | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if (fault["method"] in (None, method)) and (fault["route"] in (None, route)):
                    return self.faults.pop(i)
        return None

    def handle(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict | str, dict]:
        """Returns (status, JSON body or "drop"/raw text, extra headers)."""
        route, ids = _route(method, path)
        status = 500
        try:
            if route is None:
                raise ApiError(400, "Invalid request URL.", "invalid_request_url")
            version = headers.get("Notion-Version")
            if not version:
                raise ApiError(
                    400,
                    "Notion-Version header failed validation: Notion-Version header should be defined, instead was "
                    "`undefined`.",
                    "missing_version",
                )
            if version not in KNOWN_VERSIONS:
                raise ApiError(400, f"Provided API version {version} is not supported.", "validation_error")
            auth = headers.get("Authorization") or ""
            if auth != f"Bearer {self.token}":
                raise ApiError(401)
            wait = self._take_token()
            if wait is not None:
                raise ApiError(429, headers={"Retry-After": str(max(1, math.ceil(wait)))})
            fault = self._fault_for(method, route)
            if fault and not fault["after"]:
                status = self._fault_status(fault)
                return self._fault_answer(fault)
            if (
                route.startswith("/v1/data_sources")
                or route.startswith("/v1/databases")
                or route.startswith("/v1/pages")
            ):
                if version != VERSION:
                    raise ApiError(400, f"This endpoint requires Notion-Version {VERSION}.", "validation_error")
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                raise ApiError(400, "Error parsing JSON body.", "invalid_json") from None
            if not isinstance(payload, dict):
                raise ApiError(400, "body failed validation: body should be an object.")
            with self.lock:
                answer = self._dispatch(method, route, ids, payload)
                if method != "GET" and route != "/v1/data_sources/{id}/query" and self.after_write:
                    self.after_write(method, route, answer)
            if fault:
                status = self._fault_status(fault)
                return self._fault_answer(fault)
            status = 200
            return 200, answer, {}
        except ApiError as exc:
            status = exc.status
            return exc.status, _error(exc), exc.headers
        finally:
            with self.lock:
                self.log.append((method, route or path, status))
                self.stamps.append(time.monotonic())

    @staticmethod
    def _fault_status(fault: dict) -> int:
        return 0 if fault["kind"] == "drop" else int(fault["kind"])

    def _fault_answer(self, fault: dict):
        if fault["kind"] == "drop":
            return 0, "drop", {}
        status = int(fault["kind"])
        if status == 502:
            return 502, "<html><body><h1>502 Bad Gateway</h1></body></html>", {}
        headers = {"Retry-After": str(self.retry_after)} if status in (429, 529) else {}
        return status, _error(ApiError(status)), headers

    def _dispatch(self, method: str, route: str, ids: list[str], body: dict) -> dict:
        if route == "/v1/users/me":
            return {"object": "user", "id": BOT_ID, "type": "bot", "name": "Angles test integration", "bot": {}}
        if route == "/v1/databases/{id}":
            database = self.databases.get(ids[0])
            if not database:
                raise _not_found(ids[0], "database")
            return {
                "object": "database",
                "id": database["id"],
                "title": [rich_item("Decisions")],
                "data_sources": [{"id": s, "name": "Decisions"} for s in database["sources"]],
                "created_time": iso(database["created"]),
                "in_trash": False,
            }
        if route.startswith("/v1/data_sources/{id}"):
            source = self.sources.get(ids[0])
            if not source:
                raise _not_found(ids[0], "data source")
            if route == "/v1/data_sources/{id}" and method == "GET":
                return self._source_object(source)
            if route == "/v1/data_sources/{id}":
                self._update_source(source, body)
                return self._source_object(source)
            return self._query(source, body)
        if route == "/v1/pages" and method == "POST":
            return self._create_page(body)
        page = self.pages.get(ids[0])
        if not page:
            raise _not_found(ids[0], "page")
        if method == "GET":
            return page
        return self._update_page(page, body)

    def _source_object(self, source: dict) -> dict:
        return {
            "object": "data_source",
            "id": source["id"],
            "title": [rich_item("Decisions")],
            "parent": {"type": "database_id", "database_id": source["database_id"]},
            "properties": json.loads(json.dumps(source["properties"])),
        }

    def _update_source(self, source: dict, body: dict) -> None:
        changes = body.get("properties") or {}
        if not isinstance(changes, dict):
            raise ApiError(400, "body failed validation: body.properties should be an object.")
        for name, config in changes.items():
            if config is None:
                if source["properties"].get(name, {}).get("type") == "title":
                    raise ApiError(400, "Cannot delete the title property.")
                source["properties"].pop(name, None)
                continue
            kinds = [k for k in config if k not in ("name", "description")]
            if len(kinds) != 1:
                raise ApiError(400, f"body failed validation: body.properties.{name} should define one type.")
            kind = kinds[0]
            if kind == "title" and any(p["type"] == "title" and n != name for n, p in source["properties"].items()):
                raise ApiError(400, "A data source can only have one title property.")
            options = (config[kind] or {}).get("options", []) if kind in ("select", "multi_select") else []
            for option in options:
                _check_option(name, option.get("name", ""))
            settings = self._relation_config(name, config[kind]) if kind == "relation" else config[kind]
            source["properties"][config.get("name", name)] = self._property(config.get("name", name), kind, settings)

    def _query(self, source: dict, body: dict) -> dict:
        size = body.get("page_size", 100)
        if not isinstance(size, int) or size < 1 or size > 100:
            raise ApiError(400, f"body failed validation: body.page_size should be ≤ `100`, instead was `{size}`.")
        want_trash = bool(body.get("in_trash") or body.get("archived"))
        matcher = _compile_filter(body.get("filter"), source)
        found = [
            self.pages[i]
            for i in self.order
            if self.pages[i]["parent"]["data_source_id"] == source["id"]
            and self.pages[i]["in_trash"] == want_trash
            and matcher(self.pages[i])
        ]
        for sort in reversed(body.get("sorts") or []):
            key = sort.get("timestamp") if isinstance(sort, dict) else None
            if key not in ("created_time", "last_edited_time"):
                raise ApiError(400, "body failed validation: body.sorts should be timestamp sorts in this fake.")
            # A stable sort keeps creation order among equal (minute-rounded) times.
            found.sort(key=lambda p, k=key: p[k], reverse=sort.get("direction") == "descending")
        start = 0
        cursor = body.get("start_cursor")
        if cursor:
            ids = [p["id"] for p in found]
            if cursor not in ids:
                raise ApiError(400, "body failed validation: body.start_cursor should be a valid cursor.")
            start = ids.index(cursor)
        chunk = found[start : start + size]
        more = start + size < len(found)
        return {
            "object": "list",
            "results": chunk,
            "next_cursor": found[start + size]["id"] if more else None,
            "has_more": more,
            "type": "page_or_data_source",
            "page_or_data_source": {},
        }

    def _create_page(self, body: dict) -> dict:
        parent = body.get("parent") or {}
        source_id = parent.get("data_source_id")
        if parent.get("type", "data_source_id") != "data_source_id" and parent.get("database_id"):
            database = self.databases.get(parent["database_id"])
            if database and len(database["sources"]) == 1:
                source_id = database["sources"][0]
        if not source_id:
            raise ApiError(400, "body failed validation: body.parent.data_source_id should be defined.")
        source = self.sources.get(source_id)
        if not source:
            raise _not_found(source_id, "data source")
        props = self._apply_values(source, {}, body.get("properties") or {})
        return self._new_page(source, props, BOT_ID, None)

    def _update_page(self, page: dict, body: dict) -> dict:
        trash = body.get("in_trash", body.get("archived"))
        if trash is not None and not isinstance(trash, bool):
            raise ApiError(400, "body failed validation: body.in_trash should be a boolean.")
        if page["in_trash"] and trash is not False and body.get("properties"):
            raise ApiError(400, "Can't edit block that is archived. You must unarchive the block before editing.")
        source = self.sources[page["parent"]["data_source_id"]]
        if body.get("properties"):
            page["properties"] = self._apply_values(source, page["properties"], body["properties"])
        if trash is not None:
            page["in_trash"] = page["archived"] = trash
        self._touch(page, BOT_ID, None)
        return page

    def _new_page(self, source: dict, props: dict, who: str, when: datetime | None) -> dict:
        for name, prop in source["properties"].items():
            if name not in props:
                props[name] = self._empty_value(prop)
        now = minute(when or self.clock())
        page_id = str(uuid.uuid4())
        page = {
            "object": "page",
            "id": page_id,
            "created_time": iso(now),
            "last_edited_time": iso(now),
            "created_by": {"object": "user", "id": who},
            "last_edited_by": {"object": "user", "id": who},
            "cover": None,
            "icon": None,
            "parent": {"type": "data_source_id", "data_source_id": source["id"], "database_id": source["database_id"]},
            "archived": False,
            "in_trash": False,
            "properties": props,
            "url": f"https://www.notion.so/{page_id.replace('-', '')}",
        }
        self.pages[page_id] = page
        self.order.append(page_id)
        return page

    def _touch(self, page: dict, who: str, when: datetime | None) -> None:
        page["last_edited_time"] = iso(minute(when or self.clock()))
        page["last_edited_by"] = {"object": "user", "id": who}

    @staticmethod
    def _empty_value(prop: dict) -> dict:
        kind = prop["type"]
        empty = {"title": [], "rich_text": [], "select": None, "multi_select": [], "date": None, "checkbox": False}
        if kind == "relation":
            return {"id": prop["id"], "type": kind, kind: [], "has_more": False}
        return {"id": prop["id"], "type": kind, kind: empty.get(kind)}

    def _apply_values(self, source: dict, current: dict, values: dict) -> dict:
        """Validate request property values against the schema and return the page's new properties."""
        if not isinstance(values, dict):
            raise ApiError(400, "body failed validation: body.properties should be an object.")
        out = dict(current)
        for name, value in values.items():
            prop = source["properties"].get(name)
            if prop is None:
                raise ApiError(400, f"{name} is not a property that exists.")
            kind = prop["type"]
            if not isinstance(value, dict) or kind not in value:
                raise ApiError(400, f"{name} is expected to be {kind}.")
            raw = value[kind]
            where = f"body.properties.{name}.{kind}"
            if kind in ("title", "rich_text"):
                stored = [rich_item(c) for c in _check_rich_text(where, raw)]
            elif kind == "select":
                stored = None
                if raw is not None:
                    stored = self._select(prop, name, raw, where)
            elif kind == "multi_select":
                if not isinstance(raw, list):
                    raise ApiError(400, f"body failed validation: {where} should be an array.")
                if len(raw) > ARRAY_LIMIT:
                    raise ApiError(
                        400,
                        f"body failed validation: {where}.length should be ≤ `{ARRAY_LIMIT}`, "
                        f"instead was `{len(raw)}`.",
                    )
                stored = [self._select(prop, name, o, f"{where}[{i}]") for i, o in enumerate(raw)]
            elif kind == "date":
                stored = None
                if raw is not None:
                    start = raw.get("start") if isinstance(raw, dict) else None
                    try:
                        parse_time(start)
                    except (TypeError, ValueError, AttributeError):
                        raise ApiError(
                            400, f"body failed validation: {where}.start should be a valid ISO 8601 date."
                        ) from None
                    stored = {"start": start, "end": raw.get("end"), "time_zone": None}
            elif kind == "checkbox":
                if not isinstance(raw, bool):
                    raise ApiError(400, f"body failed validation: {where} should be a boolean.")
                stored = raw
            elif kind == "relation":
                out[name] = {"id": prop["id"], "type": kind, kind: self._relation(prop, raw, where), "has_more": False}
                continue
            else:
                raise ApiError(400, f"Property type {kind} cannot be written by this fake.")
            out[name] = {"id": prop["id"], "type": kind, kind: stored}
        return out

    def _relation(self, prop: dict, raw, where: str) -> list[dict]:
        """Page references; each must be a page of the related data source."""
        if not isinstance(raw, list):
            raise ApiError(400, f"body failed validation: {where} should be an array.")
        if len(raw) > ARRAY_LIMIT:
            raise ApiError(
                400, f"body failed validation: {where}.length should be ≤ `{ARRAY_LIMIT}`, instead was `{len(raw)}`."
            )
        related = prop["relation"]["data_source_id"]
        out = []
        for i, item in enumerate(raw):
            page_id = item.get("id") if isinstance(item, dict) else None
            try:
                page_id = str(uuid.UUID(str(page_id)))
            except ValueError:
                raise ApiError(400, f"body failed validation: {where}[{i}].id should be a valid uuid.") from None
            page = self.pages.get(page_id)
            if page is None or page["parent"]["data_source_id"] != related:
                raise ApiError(400, f"Relation page {page_id} is not a page of the related data source.")
            out.append({"id": page_id})
        return out

    def _select(self, prop: dict, name: str, raw, where: str) -> dict:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise ApiError(400, f"body failed validation: {where}.name should be a string.")
        _check_option(name, raw["name"])
        options = prop[prop["type"]].setdefault("options", [])
        option = next((o for o in options if o["name"] == raw["name"]), None)
        if option is None:
            # Notion adds a new option to the schema when a page uses it.
            option = self._option(raw["name"])
            options.append(option)
        return dict(option)


def _check_option(name: str, option: str) -> None:
    if "," in option:
        raise ApiError(400, f"Invalid select option, commas not allowed: {option}")
    if len(option) > OPTION_LIMIT:
        raise ApiError(400, f"body failed validation: select option name for {name} should be ≤ `100` characters.")


def _check_rich_text(where: str, raw) -> list[str]:
    if not isinstance(raw, list):
        raise ApiError(400, f"body failed validation: {where} should be an array.")
    if len(raw) > ARRAY_LIMIT:
        raise ApiError(
            400, f"body failed validation: {where}.length should be ≤ `{ARRAY_LIMIT}`, instead was `{len(raw)}`."
        )
    contents = []
    for i, item in enumerate(raw):
        text = item.get("text") if isinstance(item, dict) else None
        content = text.get("content") if isinstance(text, dict) else None
        if not isinstance(content, str):
            raise ApiError(400, f"body failed validation: {where}[{i}].text.content should be defined.")
        units = utf16_len(content)
        if units > TEXT_LIMIT:
            raise ApiError(
                400,
                f"body failed validation: {where}[{i}].text.content.length should be ≤ `{TEXT_LIMIT}`, "
                f"instead was `{units}`.",
            )
        contents.append(content)
    return contents


def _compile_filter(spec, source: dict):
    if not spec:
        return lambda page: True
    if "and" in spec:
        parts = [_compile_filter(s, source) for s in spec["and"]]
        return lambda page: all(p(page) for p in parts)
    if "or" in spec:
        parts = [_compile_filter(s, source) for s in spec["or"]]
        return lambda page: any(p(page) for p in parts)
    if spec.get("timestamp") in ("last_edited_time", "created_time"):
        field = spec["timestamp"]
        condition = spec.get(field) or {}
        ops = {
            "on_or_after": lambda a, b: a >= b,
            "after": lambda a, b: a > b,
            "on_or_before": lambda a, b: a <= b,
            "before": lambda a, b: a < b,
            "equals": lambda a, b: a == b,
        }
        if len(condition) != 1 or next(iter(condition)) not in ops:
            raise ApiError(400, f"body failed validation: body.filter.{field} should be a date filter.")
        op, value = next(iter(condition.items()))
        try:
            bound = parse_time(value)
        except (TypeError, ValueError):
            raise ApiError(
                400, f"body failed validation: body.filter.{field}.{op} should be an ISO 8601 date."
            ) from None
        return lambda page: ops[op](parse_time(page[field]), bound)
    name = spec.get("property")
    if name is not None:
        prop = source["properties"].get(name)
        if prop is None:
            raise ApiError(400, f"Could not find property with name or id: {name}")
        kind = prop["type"]
        condition = spec.get(kind)
        if not isinstance(condition, dict):
            raise ApiError(400, f"body failed validation: body.filter.{kind} should be defined.")
        op, value = next(iter(condition.items()))

        def text_of(page):
            raw = page["properties"].get(name, {}).get(kind) or []
            return "".join(i["plain_text"] for i in raw)

        if kind in ("rich_text", "title"):
            tests = {
                "equals": lambda t: t == value,
                "contains": lambda t: value in t,
                "is_empty": lambda t: t == "",
                "is_not_empty": lambda t: t != "",
            }
            return lambda page: tests[op](text_of(page))
        if kind == "checkbox":
            return lambda page: page["properties"].get(name, {}).get("checkbox") == value
        raise ApiError(400, f"Filtering on {kind} is not supported by this fake.")
    raise ApiError(400, "body failed validation: body.filter should be a property or timestamp filter.")


def _not_found(object_id: str, what: str) -> ApiError:
    return ApiError(
        404,
        f"Could not find {what} with ID: {object_id}. Make sure the relevant pages and databases are shared with "
        "your integration.",
        "object_not_found",
    )


def _error(exc: ApiError) -> dict:
    return {
        "object": "error",
        "status": exc.status,
        "code": exc.code,
        "message": exc.message,
        "request_id": str(uuid.uuid4()),
    }


ROUTES = (
    ("GET", ("users", "me"), "/v1/users/me"),
    ("GET", ("databases", None), "/v1/databases/{id}"),
    ("GET", ("data_sources", None), "/v1/data_sources/{id}"),
    ("PATCH", ("data_sources", None), "/v1/data_sources/{id}"),
    ("POST", ("data_sources", None, "query"), "/v1/data_sources/{id}/query"),
    ("POST", ("pages",), "/v1/pages"),
    ("GET", ("pages", None), "/v1/pages/{id}"),
    ("PATCH", ("pages", None), "/v1/pages/{id}"),
)


def _route(method: str, path: str) -> tuple[str | None, list[str]]:
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if not parts or parts[0] != "v1":
        return None, []
    parts = parts[1:]
    for m, shape, name in ROUTES:
        if m != method or len(shape) != len(parts):
            continue
        ids = []
        for want, got in zip(shape, parts, strict=True):
            if want is None:
                ids.append(_dashed(got))
            elif want != got:
                break
        else:
            return name, ids
    return None, []


def _dashed(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return raw


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    state: FakeNotion

    def log_message(self, *args):
        pass

    def date_time_string(self, timestamp=None):
        # The Date header every Notion answer carries, from the workspace's clock like its page times.
        return format_datetime(self.state.clock(), usegmt=True)

    def _serve(self):
        if self.state.delay:
            time.sleep(self.state.delay)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, answer, headers = self.state.handle(self.command, self.path, self.headers, body)
        if answer == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if isinstance(answer, str):
            data, kind = answer.encode(), "text/html"
        else:
            data, kind = json.dumps(answer, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815 - http.server API
