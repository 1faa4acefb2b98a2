"""Putting decisions in by hand: add one, list, show one, import many from JSON or CSV."""

from __future__ import annotations

import csv
import json
import logging
import uuid
from datetime import date
from pathlib import Path

from angles.engines.decision_model import PRIORITIES, TYPES, validate
from angles.errors import DatabaseError, NotFoundError, ValidationError
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)

# Rows imported without an id get one derived from their content, so importing the same file twice is a no-op.
IMPORT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "angles-ai-universe/decision-import")
# What a person edits; an import compares and updates only these, and only the ones its file provides.
EDITABLE = ("decision", "date", "type", "priority", "tags", "active", "comment")
WRITE_BATCH = 500
# Beyond this many rows a paged scan of the vault is cheaper than a lookup per row (over REST especially).
LOOKUP_LIMIT = 50


def _writable(storage) -> None:
    latest = migrations.latest_version(storage.dialect)
    version = storage.schema_version()
    if version is None or version < latest:
        raise DatabaseError(
            f"the database schema is at version {version or 0} of {latest}; run `python run_migration.py` first"
        )


def run_add(
    settings,
    *,
    text: str,
    type: str | None = None,
    priority: str | None = None,
    tags: str | list[str] | None = None,
    comment: str | None = None,
    on: str | None = None,
) -> dict:
    """Validate and store one new decision; returns it as stored."""
    record = {"decision": text, "type": type, "priority": priority, "tags": tags, "comment": comment, "date": on}
    row = validate(record, "decision")
    # create=False: an SQLite file that does not exist yet is not made here, only by run_migration.py.
    with open_storage(settings, create=False) as storage:
        _writable(storage)
        storage.upsert_decisions([row])
        stored = storage.get_decision(row["id"])
        storage.record_activity("decisions", "add", "completed", f"added {row['id']}")
    logger.info("decision %s added (type %s) completed", row["id"], row["type"])
    return {"decision": stored, "exit_code": 0}


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise ValidationError(f"--since {value!r} is not a date (YYYY-MM-DD)") from None


def run_list(
    settings,
    *,
    type: str | None = None,
    priority: str | None = None,
    active: bool | None = None,
    since: str | None = None,
) -> dict:
    """Decisions matching the filters, oldest decision date first; `since` compares the decision's date."""
    if type is not None and type.lower() not in TYPES:
        raise ValidationError(f"--type {type!r} is unknown (one of {', '.join(TYPES)})")
    if priority is not None and priority.upper() not in PRIORITIES:
        raise ValidationError(f"--priority {priority!r} is unknown (one of {', '.join(PRIORITIES)})")
    start = _since(since)
    with open_storage(settings, create=False) as storage:
        rows = [
            r
            for r in storage.iter_decisions(
                type=type.lower() if type else None,
                priority=priority.upper() if priority else None,
                active=active,
            )
            if start is None or r["date"] >= start
        ]
    rows.sort(key=lambda r: (r["date"], r["created_at"] or "", r["id"]))
    return {"count": len(rows), "decisions": rows, "exit_code": 0}


def run_show(settings, ident: str) -> dict:
    """One decision with every stored field, by id or by a unique id prefix (as `list` prints)."""
    ident = ident.strip().lower()
    try:
        full = str(uuid.UUID(ident))
    except ValueError:
        full = None
        if len(ident) < 4:
            raise ValidationError(f"id {ident!r} is too short: give at least 4 characters") from None
    with open_storage(settings, create=False) as storage:
        if full is not None:
            row = storage.get_decision(full)
        else:
            matches = [r for r in storage.iter_decisions() if r["id"].startswith(ident)]
            if len(matches) > 1:
                raise ValidationError(f"id prefix {ident!r} matches {len(matches)} decisions; give more of it")
            row = matches[0] if matches else None
    if row is None:
        raise NotFoundError(f"no decision with id {ident!r}")
    return {"decision": row, "exit_code": 0}


def _read_json(path: Path, raw: str) -> list[tuple[str, object]]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path.name}: not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if isinstance(data, dict) and isinstance(data.get("decisions"), list):
        return [(f"decisions[{i}]", item) for i, item in enumerate(data["decisions"])]
    if isinstance(data, list):
        return [(f"[{i}]", item) for i, item in enumerate(data)]
    raise ValidationError(f'{path.name}: expected a list of decisions or {{"decisions": [...]}}')


def _read_csv(path: Path, raw: str) -> list[tuple[str, object]]:
    reader = csv.DictReader(raw.splitlines(keepends=True))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "decision" not in header:
        raise ValidationError(f"{path.name}: the CSV header must name a 'decision' column (found {header or 'none'})")
    records = []
    for row in reader:
        cleaned = {
            (k or "").strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k is not None
        }
        records.append((f"line {reader.line_num}", {k: v for k, v in cleaned.items() if v not in ("", None)}))
    return records


def read_records(path: Path) -> list[tuple[str, object]]:
    """(where, record) pairs from a JSON list, the original export shape, or a CSV file with a header."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read it ({exc})") from None
    suffix = path.suffix.lower()
    if suffix == ".json" or (suffix != ".csv" and raw.lstrip()[:1] in ("[", "{")):
        return _read_json(path, raw)
    return _read_csv(path, raw)


def _content_id(record: dict) -> str:
    parts = [str(record.get(k) or "").strip() for k in ("decision", "type", "date")]
    parts[1] = parts[1].lower()
    return str(uuid.uuid5(IMPORT_NAMESPACE, "\x1f".join(parts)))


def _existing(storage, candidates: dict) -> dict[str, dict]:
    """Stored rows for the ids about to be imported: one lookup each for a few, one paged scan for many."""
    if len(candidates) <= LOOKUP_LIMIT:
        found = (storage.get_decision(i) for i in candidates)
        return {row["id"]: row for row in found if row is not None}
    return {row["id"]: row for row in storage.iter_decisions() if row["id"] in candidates}


def run_import(settings, path: Path, *, dry_run: bool = False) -> dict:
    """Import valid records (new ones inserted, changed ones updated, ids kept); report and skip invalid ones."""
    records = read_records(Path(path))
    invalid, duplicates = [], []
    candidates: dict[str, tuple[dict, tuple[str, ...]]] = {}
    for where, record in records:
        if not isinstance(record, dict):
            invalid.append({"where": where, "error": f"{where}: not an object"})
            continue
        record = {str(k).strip().lower(): v for k, v in record.items()}
        if record.get("id") in (None, "") and str(record.get("decision") or "").strip():
            record["id"] = _content_id(record)
        try:
            row = validate(record, where)
        except ValidationError as exc:
            invalid.append({"where": where, "error": str(exc)})
            continue
        if row["id"] in candidates:
            duplicates.append({"where": where, "id": row["id"]})
            continue
        candidates[row["id"]] = (row, tuple(f for f in EDITABLE if f in record))
    new, updates, unchanged = [], [], 0
    with open_storage(settings, create=False) as storage:
        if not dry_run:
            _writable(storage)
        existing = _existing(storage, candidates)
        for row, provided in candidates.values():
            current = existing.get(row["id"])
            if current is None:
                new.append(row)
                continue
            changed = {f: row[f] for f in provided if row[f] != current[f]}
            if changed:
                updates.append({"id": row["id"], **changed})
            else:
                unchanged += 1
        if not dry_run:
            storage.upsert_decisions(new, batch=WRITE_BATCH)
            for change in updates:
                storage.update_decision(change["id"], {k: v for k, v in change.items() if k != "id"})
            storage.record_activity(
                "decisions",
                "import",
                "completed" if not invalid else "completed_with_errors",
                f"{Path(path).name}: {len(new)} new, {len(updates)} updated, {unchanged} unchanged, "
                f"{len(invalid)} invalid",
            )
    suffix = " (dry run)" if dry_run else ""
    for problem in invalid:
        logger.warning("import skipped %s%s", problem["error"], suffix)
    logger.info(
        "import of %s completed%s: %d new, %d updated, %d unchanged, %d invalid, %d duplicates",
        Path(path).name,
        suffix,
        len(new),
        len(updates),
        unchanged,
        len(invalid),
        len(duplicates),
    )
    return {
        "file": str(path),
        "dry_run": dry_run,
        "read": len(records),
        "new": len(new),
        "updated": len(updates),
        "unchanged": unchanged,
        "duplicates": duplicates,
        "invalid": invalid,
        "exit_code": 1 if invalid else 0,
    }


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def text_list(result: dict) -> str:
    lines = []
    for r in result["decisions"]:
        state = "active" if r["active"] else "inactive"
        tags = ",".join(r["tags"]) or "-"
        lines.append(
            f"{r['id'][:8]}  {r['date']}  {r['type']:<12} {r['priority'] or '-':<3} {state:<8} "
            f"{_one_line(r['decision'], 60)}  [{tags}]"
        )
    lines.append(f"{result['count']} decision{'s' if result['count'] != 1 else ''}")
    return "\n".join(lines)


def text_show(result: dict) -> str:
    row = result["decision"]
    width = max(len(k) for k in row)
    lines = []
    for key, value in row.items():
        if isinstance(value, (dict, list)):
            shown = json.dumps(value, ensure_ascii=False, indent=2 if isinstance(value, dict) else None)
            shown = shown.replace("\n", "\n" + " " * (width + 2))
        elif value is None:
            shown = "-"
        else:
            shown = str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def text_add(result: dict) -> str:
    row = result["decision"]
    return f"added {row['id']} ({row['type']}, {row['priority'] or 'no priority'}): {_one_line(row['decision'], 60)}"


def text_import(result: dict) -> str:
    verb = "would import" if result["dry_run"] else "imported"
    lines = [problem["error"] for problem in result["invalid"]]
    lines += [f"{d['where']}: same id as an earlier row ({d['id']}), skipped" for d in result["duplicates"]]
    lines.append(
        f"{verb} {result['file']}: {result['new']} new, {result['updated']} updated, {result['unchanged']} unchanged, "
        f"{len(result['invalid'])} invalid{' (dry run)' if result['dry_run'] else ''}"
    )
    return "\n".join(lines)
