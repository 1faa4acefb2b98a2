"""Conversions between decision dicts and what each backend stores."""

from __future__ import annotations

import json
from datetime import date, datetime
from uuid import UUID

from angles.engines.decision_model import (
    BOOL_COLUMNS,
    COLUMNS,
    HISTORY_COLUMNS,
    JSON_COLUMNS,
    LINK_COLUMNS,
    TIMESTAMP_COLUMNS,
    to_iso,
    utc_now,
)

# The columns PostgreSQL stores as uuid (psycopg returns UUID objects for them).
UUID_COLUMNS = ("id", "superseded_by")
# One encoder for every row: json.dumps with options builds a new one per call.
_json_text = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def prepare(row: dict, *, json_as_text: bool, bool_as_int: bool) -> dict:
    """A decision ready to write: timestamps filled in, JSON and booleans in the backend's form."""
    out = {k: row[k] for k in COLUMNS if k in row}
    if "created_at" not in out or not out.get("updated_at"):
        now = utc_now()
        out.setdefault("created_at", now)
        if not out.get("updated_at"):
            out["updated_at"] = now
    for column in JSON_COLUMNS:
        if column in out:
            value = out[column]
            if column == "tags" and value is None:
                value = []
            if json_as_text and value is not None:
                value = _json_text(value)
            out[column] = value
    if bool_as_int:
        for column in BOOL_COLUMNS:
            if column in out and out[column] is not None:
                out[column] = int(bool(out[column]))
    return out


def decode(row: dict) -> dict:
    """A stored row back into the canonical decision dict (same shape from every backend)."""
    # Column by column by kind rather than one loop testing every kind: this runs once per row of every scan.
    get = row.get
    out = {column: get(column) for column in COLUMNS}
    for column in JSON_COLUMNS:
        value = out[column]
        if isinstance(value, str):
            out[column] = json.loads(value)
    for column in BOOL_COLUMNS:
        value = out[column]
        if value is not None:
            out[column] = bool(value)
    for column in TIMESTAMP_COLUMNS:
        value = out[column]
        if value is not None:
            out[column] = to_iso(value)
    value = out["date"]
    if isinstance(value, (date, datetime)):
        out["date"] = value.isoformat()[:10]
    for column in UUID_COLUMNS:
        value = out[column]
        if isinstance(value, UUID):
            out[column] = str(value)
    if out["tags"] is None:
        out["tags"] = []
    return out


def decode_activity(row: dict) -> dict:
    out = dict(row)
    for column in ("created_at", "started_at", "finished_at"):
        out[column] = to_iso(out.get(column))
    return out


def decode_token(row: dict) -> dict:
    out = {k: row.get(k) for k in ("name", "scope", "created_at", "last_used_at", "revoked_at")}
    for column in ("created_at", "last_used_at", "revoked_at"):
        out[column] = to_iso(out[column])
    return out


def canonical(fields: dict) -> dict:
    """Some columns of a decision in decode()'s form, to compare with a stored row."""
    out = dict(fields)
    for column in BOOL_COLUMNS:
        if out.get(column) is not None:
            out[column] = bool(out[column])
    for column in TIMESTAMP_COLUMNS:
        if column in out:
            out[column] = to_iso(out[column])
    if "tags" in out and out["tags"] is None:
        out["tags"] = []
    value = out.get("date")
    if isinstance(value, (date, datetime)):
        out["date"] = value.isoformat()[:10]
    for column in UUID_COLUMNS:
        if isinstance(out.get(column), UUID):
            out[column] = str(out[column])
    return out


def decode_history(row: dict) -> dict:
    out = {c: row.get(c) for c in HISTORY_COLUMNS}
    for column in ("changed", "previous"):
        if isinstance(out[column], str):
            out[column] = json.loads(out[column])
    out["changed_at"] = to_iso(out["changed_at"])
    for column in ("id", "decision_id"):
        if isinstance(out[column], UUID):
            out[column] = str(out[column])
    return out


def decode_link(row: dict) -> dict:
    out = {c: row.get(c) for c in LINK_COLUMNS}
    out["created_at"] = to_iso(out["created_at"])
    for column in ("id", "from_id", "to_id"):
        if isinstance(out[column], UUID):
            out[column] = str(out[column])
    return out
