"""The decision record: its fields, validation and content hashes."""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from datetime import UTC, date, datetime

from angles.errors import ValidationError

TYPES = ("strategy", "technical", "architecture", "process", "security", "ethical", "product", "other")
PRIORITIES = ("P0", "P1", "P2")

# Columns of decision_vault, in the order exports and backups write them.
COLUMNS = (
    "id",
    "decision",
    "date",
    "type",
    "priority",
    "tags",
    "active",
    "comment",
    "type_source",
    "priority_source",
    "ai_analysis",
    "ai_hash",
    "notion_page_id",
    "notion_sync_hash",
    "notion_last_edited",
    "notion_attempted_at",
    "synced",
    "synced_at",
    "superseded_by",
    "deleted_at",
    "created_at",
    "updated_at",
)
BOOL_COLUMNS = ("active", "synced")
JSON_COLUMNS = ("tags", "ai_analysis")
TIMESTAMP_COLUMNS = (
    "notion_last_edited",
    "notion_attempted_at",
    "synced_at",
    "deleted_at",
    "created_at",
    "updated_at",
)
# The fields a person edits; their hash decides whether Notion needs a write.
CONTENT_FIELDS = ("decision", "date", "type", "priority", "tags", "active", "comment", "deleted_at")

# What a history row keeps of the version it replaces: the content plus where the decision stands.
HISTORY_FIELDS = ("decision", "date", "type", "priority", "tags", "active", "comment", "superseded_by", "deleted_at")
HISTORY_COLUMNS = ("id", "decision_id", "changed_at", "source", "reason", "changed", "previous")
LINK_COLUMNS = ("id", "from_id", "to_id", "kind", "source", "created_at")
LINK_KINDS = ("depends_on", "relates_to", "conflicts_with", "refines")
# Who changed a decision; "agent:<name>" names an assistant.
SOURCES = ("cli", "notion", "import", "restore", "ai", "system")
LINK_NAMESPACE = uuid.UUID("6f1d7c64-2a3b-5b8e-9d0a-4c1e2f3a5b6c")

ACTIVITY_COLUMNS = (
    "id",
    "agent_name",
    "action",
    "details",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "duration_s",
    "host",
)


def utc_now() -> str:
    return to_iso(datetime.now(UTC))


CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def to_iso(value) -> str | None:
    """Normalise a timestamp to one UTC text form, whatever backend it came from.

    ValueError for text that is not a timestamp or leaves years 1-9999 in UTC, TypeError for anything
    but text and datetimes (a number or a boolean is not a timestamp).
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if CANONICAL_TIMESTAMP.fullmatch(value):
            # Already in the form this function writes (SQLite stores it so): skip parsing, it adds up per row.
            return value
        value = parse_timestamp(value)
    elif not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not a timestamp")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the timestamp lies outside years 1-9999 in UTC") from None
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    text = text.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _date(value, where: str) -> str:
    if value is None or value == "":
        return date.today().isoformat()
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValidationError(f"{where}: date {value!r} is not a date (YYYY-MM-DD)")
    text = value.strip()
    try:
        if DAY.fullmatch(text):
            return date.fromisoformat(text).isoformat()
        # A whole timestamp is accepted too (older exports wrote one); its date is the day as written.
        parse_timestamp(text)
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise ValidationError(f"{where}: date {_shown(text)} is not a date (YYYY-MM-DD)") from None


DAY = re.compile(r"\d{4}-\d\d-\d\d")
# Deeper JSON than this in a decision is refused: it is no analysis a person or model writes, and encoding
# it again (export, backup, PostgreSQL) would exhaust Python's recursion limit.
MAX_NESTING = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def unstorable(value, depth: int = 0) -> str | None:
    """Why a field's value cannot be stored alike on every backend and exported as JSON, or None.

    A NUL character (SQLite keeps it, PostgreSQL refuses it), a lone surrogate (no UTF-8 form), NaN or
    infinity (no JSON form), nesting deeper than MAX_NESTING.
    """
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            return "holds a NUL character (\\u0000)"
        if not value.isascii() and _SURROGATE.search(value):
            return "holds a lone surrogate (text with no UTF-8 form)"
        return None
    if kind is float:
        return None if math.isfinite(value) else f"holds {value}, which JSON cannot carry"
    if kind is dict or kind is list:
        if depth >= MAX_NESTING:
            return f"is nested more than {MAX_NESTING} levels deep"
        items = value.items() if kind is dict else enumerate(value)
        for key, item in items:
            problem = (kind is dict and unstorable(key, depth + 1)) or unstorable(item, depth + 1)
            if problem:
                return problem
    return None


def unstorable_field(record: dict) -> tuple[str, str] | None:
    """The first field of a record (and why) that unstorable() refuses, or None."""
    for name, value in record.items():
        problem = unstorable(value)
        if problem:
            return str(name), problem
    return None


def _bool(value, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "t", "on"):
        return True
    if text in ("0", "false", "no", "n", "f", "off"):
        return False
    raise ValueError(text)


def _tags(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            value = [t for t in (p.strip() for p in text.replace(";", ",").split(",")) if t]
    seen: list[str] = []
    for tag in value:
        tag = str(tag).strip().replace(",", " ")
        if tag and tag not in seen:
            seen.append(tag)
    return seen


def validate(record: dict, where: str = "decision") -> dict:
    """Return a normalised copy of a decision, or raise ValidationError naming the problem."""
    row = {k: record.get(k) for k in COLUMNS if k in record}
    refused = unstorable_field(row)
    if refused:
        raise ValidationError(f"{where}: {refused[0]} {refused[1]}")
    text = record.get("decision")
    if text is None or not str(text).strip():
        raise ValidationError(f"{where}: decision text is empty")
    row["decision"] = str(text)
    kind = record.get("type")
    kind = str(kind).strip().lower() if kind not in (None, "") else "other"
    if kind not in TYPES:
        raise ValidationError(f"{where}: type {kind!r} is unknown (one of {', '.join(TYPES)})")
    row["type"] = kind
    priority = record.get("priority")
    if priority not in (None, ""):
        priority = str(priority).strip().upper()
        if priority not in PRIORITIES:
            raise ValidationError(f"{where}: priority {priority!r} is unknown (one of {', '.join(PRIORITIES)})")
        row["priority"] = priority
    else:
        row["priority"] = None
    raw_id = record.get("id")
    if raw_id in (None, ""):
        row["id"] = str(uuid.uuid4())
    else:
        try:
            row["id"] = str(uuid.UUID(str(raw_id)))
        except ValueError:
            raise ValidationError(f"{where}: id {raw_id!r} is not a UUID") from None
    row["date"] = _date(record.get("date"), where)
    try:
        row["active"] = _bool(record.get("active"), True)
        row["synced"] = _bool(record.get("synced"), False)
    except ValueError as exc:
        raise ValidationError(f"{where}: active/synced {exc} is not true or false") from None
    try:
        row["tags"] = _tags(record.get("tags"))
    except (ValueError, TypeError):
        raise ValidationError(f"{where}: tags must be a list or comma-separated text") from None
    comment = record.get("comment")
    row["comment"] = None if comment in (None, "") else str(comment)
    for column in TIMESTAMP_COLUMNS:
        if column in record:
            try:
                row[column] = to_iso(record[column])
            except (ValueError, TypeError):
                shown = _shown(record[column]) if isinstance(record[column], str) else repr(record[column])
                raise ValidationError(f"{where}: {column} {shown} is not a timestamp") from None
    row.setdefault("type_source", "person" if record.get("type") not in (None, "") else "ai")
    if row.get("priority_source") is None and row["priority"] is not None:
        row["priority_source"] = "person"
    return row


# json.dumps with options builds a new encoder per call; one shared encoder writes the same text.
_HASH_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)


def content_hash(row: dict, fields: tuple[str, ...] = CONTENT_FIELDS) -> str:
    """A stable hash of the fields that matter to a reader of the decision."""
    payload = _HASH_ENCODER.encode({f: row.get(f) for f in fields})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_source(source: str) -> str:
    """A change's source as history stores it, or ValidationError."""
    text = str(source or "").strip()
    if text in SOURCES or (text.startswith("agent:") and len(text) > 6 and len(text) <= 100):
        return text
    raise ValidationError(f"source {source!r} is unknown (one of {', '.join(SOURCES)} or agent:<name>)")


def link_id(from_id: str, to_id: str, kind: str) -> str:
    """The one id a link has, whoever makes it and however often: restores and retries stay idempotent."""
    return str(uuid.uuid5(LINK_NAMESPACE, f"{from_id}|{to_id}|{kind}"))


def history_entry(old: dict, new: dict, source: str, reason: str | None = None) -> dict | None:
    """The history row a change from `old` (a stored decision) to `new` (some of its columns) leaves; None if no
    content changes. Both sides are in decode()'s canonical form."""
    changed = [f for f in HISTORY_FIELDS if f in new and new[f] != old.get(f)]
    if not changed:
        return None
    return {
        "id": str(uuid.uuid4()),
        "decision_id": old["id"],
        "changed_at": utc_now(),
        "source": source,
        "reason": reason,
        "changed": changed,
        "previous": {f: old.get(f) for f in HISTORY_FIELDS},
    }


def normalise_text(text: str) -> str:
    """The form two decisions must share to count as the same: case, spacing and trailing punctuation aside."""
    flat = " ".join(str(text).split()).casefold()
    return flat.rstrip(".!?;:,… ").strip()
