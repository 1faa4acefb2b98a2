"""The one door to the Notion API: rate limit, retries, timeouts and error mapping over notion-client."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx
from notion_client import Client
from notion_client.errors import HTTPResponseError, RequestTimeoutError

from angles.errors import ExternalServiceError
from angles.rate_limit import TokenBucket

logger = logging.getLogger(__name__)

# Statuses Notion documents as transient; 529 is "service_overload".
RETRY_STATUSES = (409, 429, 500, 502, 503, 504, 529)
# Refusals that mean the request was not applied, so even a create may be sent again. A 529 is not one:
# like any 5xx it may come from behind a request that was applied.
REFUSED_STATUSES = (429,)
# Answers whose Retry-After says when to come back.
RETRY_AFTER_STATUSES = (429, 529)
MAX_ATTEMPTS = 7
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 120.0
TIMEOUT_S = 30.0
PAGE_SIZE = 100


class NotionError(ExternalServiceError):
    """Notion refused or failed a request; carries Notion's status and error code."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class NotionAuthError(NotionError):
    """The token was rejected (401) or lacks access (403)."""


class NotionNotFoundError(NotionError):
    """The object does not exist or is not shared with the integration (404)."""


class NotionRejectedError(NotionError):
    """Notion refused this one request's content (400); other requests may still succeed."""


class NotionUncertainError(NotionError):
    """A write may or may not have been applied (timeout, dropped connection, 5xx): look before repeating it."""


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter, so retries from several hosts do not arrive together."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def _body_of(exc: HTTPResponseError) -> tuple[str | None, str]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return None, (exc.body or "")[:200]
    if not isinstance(body, dict):
        return None, str(body)[:200]
    return body.get("code"), str(body.get("message") or "")


def _retry_after(exc: HTTPResponseError) -> float | None:
    raw = exc.headers.get("retry-after") if exc.headers is not None else None
    if raw is None:
        return None
    try:
        return min(RETRY_AFTER_CAP, max(0.0, float(raw)))
    except ValueError:
        return None


class NotionClient:
    """Notion requests at a steady rate, retried when that is safe, failing as domain errors."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = "https://api.notion.com",
        rps: float = 3.0,
        timeout: float = TIMEOUT_S,
        attempts: int = MAX_ATTEMPTS,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.bucket = TokenBucket(rps)
        self.requests = 0
        # Notion's own clock, from the Date header of its latest answer (None before the first one).
        self.notion_time: datetime | None = None
        self._sdk = Client(
            auth=token,
            base_url=self.base_url,
            timeout_ms=int(timeout * 1000),
            logger=logging.getLogger("notion_client"),
            client=httpx.Client(
                transport=httpx.HTTPTransport(retries=0), event_hooks={"response": [self._remember_time]}
            ),
        )

    def _remember_time(self, response: httpx.Response) -> None:
        try:
            self.notion_time = parsedate_to_datetime(response.headers["date"])
        except (KeyError, TypeError, ValueError):
            pass

    def close(self) -> None:
        self._sdk.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, what: str, fn: Callable, *, repeatable: bool = True):
        """Send one request through the rate limiter; retry what is safe to retry; map failures."""
        attempt = 0
        while True:
            attempt += 1
            self.bucket.acquire()
            self.requests += 1
            try:
                return fn()
            except HTTPResponseError as exc:
                code, message = _body_of(exc)
                status = exc.status
                detail = (
                    f"{what}: Notion answered {status}"
                    + (f" {code}" if code else "")
                    + (f": {message}" if message else "")
                )
                if status == 401:
                    raise NotionAuthError(
                        f"Notion rejected the token (401 unauthorized) on {what}; check NOTION_TOKEN",
                        status=status,
                        code=code,
                    ) from None
                if status == 403:
                    raise NotionAuthError(
                        f"{detail} (share the database with the integration)", status=status, code=code
                    ) from None
                if status == 404:
                    raise NotionNotFoundError(detail, status=status, code=code) from None
                if status not in RETRY_STATUSES:
                    raise NotionRejectedError(detail, status=status, code=code) from None
                if not repeatable and status not in REFUSED_STATUSES:
                    raise NotionUncertainError(detail, status=status, code=code) from None
                wait = _retry_after(exc) if status in RETRY_AFTER_STATUSES else None
                failure = NotionError(detail, status=status, code=code)
            except ValueError:
                # A 2xx whose body is not JSON: a proxy or an outage page, not Notion.
                reason = f"{what}: the answer from {self.base_url} is not Notion's JSON"
                if not repeatable:
                    raise NotionUncertainError(reason) from None
                wait, failure = None, NotionError(reason)
            except RequestTimeoutError:
                reason = f"{what}: Notion did not answer within {self.timeout:g} s"
                if not repeatable:
                    raise NotionUncertainError(reason) from None
                wait, failure = None, NotionError(reason)
            except httpx.TransportError as exc:
                # A refused connection never reached Notion; anything later may have been applied.
                sent = not isinstance(exc, httpx.ConnectError)
                reason = f"{what}: cannot reach Notion at {self.base_url}: {type(exc).__name__}"
                if sent and not repeatable:
                    raise NotionUncertainError(reason) from None
                wait, failure = None, NotionError(reason)
            if attempt >= self.attempts:
                if attempt == 1:
                    raise failure from None
                raise NotionError(f"{failure} (gave up after {attempt} attempts)", status=failure.status) from None
            if wait is None:
                wait = _backoff(attempt)
            logger.warning("%s; retrying in %.1f s (attempt %d of %d)", failure, wait, attempt + 1, self.attempts)
            self.bucket.pause(wait)

    # reads

    def me(self) -> dict:
        return self._call("users/me", lambda: self._sdk.users.me())

    def retrieve_database(self, database_id: str) -> dict:
        return self._call("retrieve database", lambda: self._sdk.databases.retrieve(database_id))

    def retrieve_data_source(self, data_source_id: str) -> dict:
        return self._call("retrieve data source", lambda: self._sdk.data_sources.retrieve(data_source_id))

    def resolve_data_source(self, database_id: str) -> str:
        """The data source that holds the database's pages (API 2025-09-03 splits the two)."""
        try:
            database = self.retrieve_database(database_id)
        except NotionNotFoundError:
            # NOTION_DATABASE_ID may already name a data source.
            try:
                return self.retrieve_data_source(database_id)["id"]
            except NotionNotFoundError:
                raise NotionNotFoundError(
                    f"Notion database {database_id} was not found or is not shared with the integration",
                    status=404,
                ) from None
        sources = database.get("data_sources") or []
        if not sources:
            raise NotionError(f"Notion database {database_id} has no data source")
        if len(sources) > 1:
            logger.warning(
                "Notion database %s has %d data sources; syncing with the first, %s",
                database_id,
                len(sources),
                sources[0].get("name") or sources[0]["id"],
            )
        return sources[0]["id"]

    def query(self, data_source_id: str, filter: dict | None = None, sorts: list | None = None) -> Iterator[dict]:
        """Every page of the data source matching the filter, one request per 100 pages."""
        cursor = None
        while True:
            args: dict = {"page_size": PAGE_SIZE}
            if filter:
                args["filter"] = filter
            if sorts:
                args["sorts"] = sorts
            if cursor:
                args["start_cursor"] = cursor
            answer = self._call("query data source", lambda a=args: self._sdk.data_sources.query(data_source_id, **a))
            yield from (r for r in answer.get("results", []) if r.get("object") == "page")
            cursor = answer.get("next_cursor")
            if not answer.get("has_more") or not cursor:
                return

    # writes

    def update_data_source(self, data_source_id: str, properties: dict) -> dict:
        return self._call(
            "update data source", lambda: self._sdk.data_sources.update(data_source_id, properties=properties)
        )

    def create_page(self, data_source_id: str, properties: dict, find_existing: Callable[[], dict | None]) -> dict:
        """Create one page; when an attempt may have been applied, `find_existing` is asked before trying again."""
        parent = {"type": "data_source_id", "data_source_id": data_source_id}
        for attempt in range(1, self.attempts + 1):
            try:
                return self._call(
                    "create page",
                    lambda: self._sdk.pages.create(parent=parent, properties=properties),
                    repeatable=False,
                )
            except NotionUncertainError as exc:
                found = find_existing()
                if found:
                    return found
                if attempt == self.attempts:
                    raise NotionError(f"{exc} (gave up after {attempt} attempts)", status=exc.status) from None
                wait = _backoff(attempt)
                logger.warning("%s; no page was made, creating again in %.1f s", exc, wait)
                self.bucket.pause(wait)
        raise AssertionError("unreachable")

    def update_page(self, page_id: str, *, properties: dict | None = None, in_trash: bool | None = None) -> dict:
        args: dict = {}
        if properties is not None:
            args["properties"] = properties
        if in_trash is not None:
            args["in_trash"] = in_trash
        return self._call("update page", lambda: self._sdk.pages.update(page_id, **args))


def client_for(settings, **options) -> NotionClient:
    """A client for the configured token, server and rate; options: timeout, attempts."""
    return NotionClient(settings.notion_token, base_url=settings.notion_base_url, rps=settings.notion_rps, **options)


def ping(settings, timeout: float) -> dict:
    """One users/me request within `timeout` seconds and no retry (for monitors); the bot user, or a NotionError."""
    with client_for(settings, timeout=timeout, attempts=1) as client:
        return client.me()
