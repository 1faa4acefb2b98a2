"""The decisions an operator handles by hand: add, list, show, import, search, edit, history, supersede, link."""

from __future__ import annotations

import csv
import json
import logging
import uuid
from datetime import date
from pathlib import Path

from angles.engines import vault
from angles.engines.decision_model import PRIORITIES, TYPES, normalise_text, validate
from angles.engines.restore_plan import in_link_order
from angles.errors import NotFoundError, ValidationError
from angles.progress import counted, progress_bar
from angles.storage import migrations, open_storage

logger = logging.getLogger(__name__)

# Rows imported without an id get one derived from their content, so importing the same file twice is a no-op.
IMPORT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "angles-ai-universe/decision-import")
# What a person edits; an import compares and updates only these, and only the ones its file provides.
EDITABLE = ("decision", "date", "type", "priority", "tags", "active", "comment")
WRITE_BATCH = 500
# Beyond this many rows a paged scan of the vault is cheaper than a lookup per row (over REST especially).
LOOKUP_LIMIT = 50
CSV_FIELD_LIMIT = 1 << 30


class CsvProblem(str):
    """A CSV record the reader could not parse; reported and skipped like an invalid row."""


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
    """Store one new decision unless the same text is already live; names the most similar ones."""
    record = {"decision": text, "type": type, "priority": priority, "tags": tags, "comment": comment, "date": on}
    with open_storage(settings) as storage:
        # The policy of every door: the embedded database is prepared here, a shared one needs run_migration.py.
        migrations.ensure_current(storage)
        result = vault.record(storage, {k: v for k, v in record.items() if v is not None}, source="cli")
        if result["status"] == "created":
            storage.record_activity("decisions", "add", "completed", f"added {result['id']}")
    logger.info("decision %s %s", result["id"], result["status"].replace("_", " "))
    return {**result, "exit_code": 0}


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
    """One decision with every stored field, its supersede chain, links both ways and history, by id or prefix."""
    with open_storage(settings, create=False) as storage:
        return {**vault.describe(storage, ident), "exit_code": 0}


def _read_json(path: Path, raw: str) -> list[tuple[str, object]]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path.name}: not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValidationError(f"{path.name}: JSON nested too deeply to read") from None
    if isinstance(data, dict) and isinstance(data.get("decisions"), list):
        return [(f"decisions[{i}]", item) for i, item in enumerate(data["decisions"])]
    if isinstance(data, list):
        return [(f"[{i}]", item) for i, item in enumerate(data)]
    raise ValidationError(f'{path.name}: expected a list of decisions or {{"decisions": [...]}}')


def _read_csv(path: Path, raw: str) -> list[tuple[str, object]]:
    # csv refuses fields over 128 KiB by default; a decision may well be longer, and the file is in memory anyway.
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.DictReader(raw.splitlines(keepends=True))
    try:
        header = [h.strip().lower() for h in reader.fieldnames or []]
    except csv.Error as exc:
        raise ValidationError(f"{path.name}: the CSV header cannot be read ({exc})") from None
    if "decision" not in header:
        raise ValidationError(f"{path.name}: the CSV header must name a 'decision' column (found {header or 'none'})")
    records: list[tuple[str, object]] = []
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return records
        except csv.Error as exc:
            # The reader resumes at the next line, so one malformed record costs only itself.
            where = f"line {reader.line_num}"
            records.append((where, CsvProblem(f"{where}: not a readable CSV record ({exc})")))
            continue
        cleaned = {
            (k or "").strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k is not None
        }
        records.append((f"line {reader.line_num}", {k: v for k, v in cleaned.items() if v not in ("", None)}))


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


def _dangling_links(storage, candidates: dict, invalid: list) -> set[str]:
    """Drop (as invalid) rows superseded by a decision neither stored nor in the file; the stored targets."""
    stored: set[str] = set()
    dropped = True
    while dropped:  # a row pointing at a row dropped here is dropped in the next round
        dropped = False
        for key, (row, _provided, where) in list(candidates.items()):
            target = row.get("superseded_by")
            if not target or target in stored or (target in candidates and target != key):
                continue
            if target == key:
                invalid.append({"where": where, "error": f"{where}: superseded_by names the decision itself"})
            elif storage.get_decision(target) is not None:
                stored.add(target)
                continue
            else:
                invalid.append({"where": where, "error": f"{where}: superseded_by {target} names no decision"})
            del candidates[key]
            dropped = True
    return stored


def run_import(settings, path: Path, *, dry_run: bool = False, progress: bool = False) -> dict:
    """Import valid records (new ones inserted, changed ones updated, ids kept); report and skip invalid ones."""
    records = read_records(Path(path))
    invalid, duplicates = [], []
    candidates: dict[str, tuple[dict, tuple[str, ...]]] = {}
    for where, record in records:
        if isinstance(record, CsvProblem):
            invalid.append({"where": where, "error": str(record)})
            continue
        if not isinstance(record, dict):
            invalid.append({"where": where, "error": f"{where}: not an object"})
            continue
        record = {str(k).strip().lower(): v for k, v in record.items()}
        if record.get("id") in (None, "") and str(record.get("decision") or "").strip():
            try:
                record["id"] = _content_id(record)
            except UnicodeEncodeError:
                pass  # a lone surrogate: validate() below names the field
        try:
            row = validate(record, where)
        except ValidationError as exc:
            invalid.append({"where": where, "error": str(exc)})
            continue
        if row["id"] in candidates:
            duplicates.append({"where": where, "id": row["id"], "first": candidates[row["id"]][2]})
            continue
        candidates[row["id"]] = (row, tuple(f for f in EDITABLE if f in record), where)
    new, updates, unchanged, already = [], [], 0, []
    with open_storage(settings, create=not dry_run) as storage:
        if not dry_run:
            migrations.ensure_current(storage)
        existing = _existing(storage, candidates)
        stored_targets = _dangling_links(storage, candidates, invalid)
        texts: dict[str, str] = {}
        for row, provided, where in candidates.values():
            current = existing.get(row["id"])
            if current is None:
                # The same text as a live decision (or an earlier row of this file) is not recorded twice.
                key = normalise_text(row["decision"])
                if row["active"] and not row.get("superseded_by"):
                    twin = texts.get(key) or (vault.find_duplicate(storage, row["decision"]) or {}).get("id")
                    if twin:
                        already.append({"where": where, "id": twin})
                        continue
                    texts[key] = row["id"]
                new.append(row)
                continue
            changed = {f: row[f] for f in provided if row[f] != current[f]}
            if changed:
                updates.append({"id": row["id"], **changed})
            else:
                unchanged += 1
        if not dry_run:
            with progress_bar(progress) as bar:
                # A row superseded by another row of this file is written after the row it points to.
                rows = counted(in_link_order(new, stored_targets), bar("import", len(new)) if bar else None)
                storage.upsert_decisions(rows, batch=WRITE_BATCH, source="import")
                for change in counted(updates, bar("update", len(updates)) if bar else None):
                    fields = {k: v for k, v in change.items() if k != "id"}
                    storage.update_decision(change["id"], fields, source="import")
            storage.record_activity(
                "decisions",
                "import",
                "completed" if not (invalid or duplicates) else "completed_with_errors",
                f"{Path(path).name}: {len(new)} new, {len(updates)} updated, {unchanged} unchanged, "
                f"{len(already)} already recorded, {len(invalid)} invalid, {len(duplicates)} duplicate ids",
            )
    suffix = " (dry run)" if dry_run else ""
    for problem in invalid:
        logger.warning("import skipped %s%s", problem["error"], suffix)
    for duplicate in duplicates:
        logger.warning("import skipped %s%s", duplicate_line(duplicate), suffix)
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
        "already_recorded": already,
        "duplicates": duplicates,
        "invalid": invalid,
        "exit_code": 1 if invalid or duplicates else 0,
    }


def duplicate_line(duplicate: dict) -> str:
    return f"{duplicate['where']}: same id as {duplicate['first']} ({duplicate['id']}), skipped"


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
    lines = _fields_text(row, width)
    if len(result["chain"]) > 1:
        lines.append(
            f"{'chain':<{width}}  " + " → ".join(i[:8] if i != row["id"] else f"[{i[:8]}]" for i in result["chain"])
        )
    for old_id, reason in result["reasons"].items():
        lines.append(f"{'reason':<{width}}  {old_id[:8]} superseded: {reason or '(no reason given)'}")
    for link in result["links"]:
        arrow = f"→ {link['kind']}" if link["direction"] == "out" else f"← {link['kind']} from"
        lines.append(f"{'link':<{width}}  {arrow} {link['other_id'][:8]}  {_one_line(link['other_text'] or '', 50)}")
    if result["history"]:
        count = len(result["history"])
        lines.append(f"{'history':<{width}}  {count} earlier version{'s' if count != 1 else ''} (decisions.py history)")
    return "\n".join(lines)


def _fields_text(row: dict, width: int) -> list[str]:
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
    return lines


def _similar_lines(similar: list[dict]) -> list[str]:
    return [f"  similar: {s['id'][:8]}  {s['score']:.2f}  {_one_line(s['text'], 60)}" for s in similar]


def text_add(result: dict) -> str:
    row = result["decision"]
    if result["status"] == "already_recorded":
        line = f"already recorded as {row['id']}: {_one_line(row['decision'], 60)}"
    else:
        line = (
            f"added {row['id']} ({row['type']}, {row['priority'] or 'no priority'}): {_one_line(row['decision'], 60)}"
        )
    if result.get("supersedes"):
        line += f"\n  supersedes {result['supersedes']}"
    return "\n".join([line, *_similar_lines(result["similar"])])


def text_import(result: dict) -> str:
    verb = "would import" if result["dry_run"] else "imported"
    lines = [problem["error"] for problem in result["invalid"]]
    lines += [duplicate_line(d) for d in result["duplicates"]]
    lines += [f"{d['where']}: already recorded as {d['id']}, skipped" for d in result["already_recorded"]]
    duplicates = f", {len(result['duplicates'])} duplicate ids" if result["duplicates"] else ""
    lines.append(
        f"{verb} {result['file']}: {result['new']} new, {result['updated']} updated, {result['unchanged']} unchanged, "
        + (f"{len(result['already_recorded'])} already recorded, " if result["already_recorded"] else "")
        + f"{len(result['invalid'])} invalid{duplicates}{' (dry run)' if result['dry_run'] else ''}"
    )
    return "\n".join(lines)


# the searchable vault


def _open_writable(settings):
    storage = open_storage(settings)
    try:
        migrations.ensure_current(storage)
    except BaseException:
        storage.close()
        raise
    return storage


def run_search(settings, query: str, **filters) -> dict:
    """Decisions matching a query (words, "phrases", -exclusions, OR), best first."""
    with open_storage(settings, create=False) as storage:
        hits = vault.search(storage, query, **filters)
    return {"query": query, "count": len(hits), "results": hits, "exit_code": 0}


def run_edit(settings, ident: str, changes: dict) -> dict:
    """Change some fields of one decision; the version before is kept in its history."""
    with _open_writable(settings) as storage:
        result = vault.edit(storage, ident, changes, source="cli")
        if result["changed"]:
            storage.record_activity("decisions", "edit", "completed", f"{result['id']}: {', '.join(result['changed'])}")
    logger.info("decision %s edited: %s", result["id"], ", ".join(result["changed"]) or "nothing changed")
    return {**result, "exit_code": 0}


def run_history(settings, ident: str) -> dict:
    """Every earlier version of one decision and what changed each time."""
    with open_storage(settings, create=False) as storage:
        decision_id = vault.resolve(storage, ident)
        return {
            "id": decision_id,
            "versions": vault.history(storage, decision_id),
            "current": storage.get_decision(decision_id),
            "exit_code": 0,
        }


def run_supersede(
    settings, old: str, *, by: str | None = None, new_fields: dict | None = None, reason: str | None = None
) -> dict:
    """Replace a decision by another one (existing, or new from its text); the old one stays, inactive."""
    with _open_writable(settings) as storage:
        result = vault.supersede(storage, old, new_id=by, new_fields=new_fields, reason=reason, source="cli")
        storage.record_activity("decisions", "supersede", "completed", f"{result['old_id']} -> {result['new_id']}")
    logger.info("decision %s superseded by %s", result["old_id"], result["new_id"])
    return {**result, "exit_code": 0}


def run_link(settings, from_ident: str, to_ident: str, kind: str) -> dict:
    with _open_writable(settings) as storage:
        result = vault.link(storage, from_ident, to_ident, kind, source="cli")
        if result["status"] == "created":
            storage.record_activity(
                "decisions", "link", "completed", f"{result['from_id']} {result['kind']} {result['to_id']}"
            )
    return {**result, "exit_code": 0}


def run_unlink(settings, from_ident: str, to_ident: str, kind: str | None = None) -> dict:
    with _open_writable(settings) as storage:
        from_id, to_id = vault.resolve(storage, from_ident), vault.resolve(storage, to_ident)
        removed = vault.unlink(storage, from_id, to_id, kind)
        if not removed:
            raise NotFoundError(f"no {kind + ' ' if kind else ''}link from {from_id} to {to_id}")
        storage.record_activity("decisions", "unlink", "completed", f"{from_id} -> {to_id}: {removed} removed")
    return {"from_id": from_id, "to_id": to_id, "kind": kind, "removed": removed, "exit_code": 0}


def run_similar(settings, id_or_text: str, *, limit: int = 3) -> dict:
    with open_storage(settings, create=False) as storage:
        found = vault.similar(storage, id_or_text, limit=limit)
    return {"count": len(found), "similar": found, "exit_code": 0}


def _state(hit: dict) -> str:
    if hit.get("superseded_by"):
        return f"superseded by {hit['superseded_by'][:8]}"
    return "active" if hit["active"] else "inactive"


def text_search(result: dict) -> str:
    lines = []
    for hit in result["results"]:
        lines.append(
            f"{hit['id'][:8]}  {hit['date']}  {hit['type']:<12} {hit['priority'] or '-':<3} {_state(hit)}"
            f"  score {hit['score']:.3g}"
        )
        lines.append(f"    {hit['snippet']}")
    lines.append(
        f"{result['count']} result{'s' if result['count'] != 1 else ''}" if result["count"] else "no decision matches"
    )
    return "\n".join(lines)


def text_edit(result: dict) -> str:
    if not result["changed"]:
        return f"nothing changed in {result['id']}"
    return f"edited {result['id']}: {', '.join(result['changed'])} (the version before is in its history)"


def _value(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None else _one_line(str(value), 60)


def text_history(result: dict) -> str:
    lines = []
    for version in result["versions"]:
        reason = f" ({version['reason']})" if version["reason"] else ""
        lines.append(f"version {version['version']}  changed {version['changed_at']} by {version['source']}{reason}")
        for field, change in version["changed"].items():
            lines.append(f"    {field}: {_value(change['from'])} → {_value(change['to'])}")
    current = result["current"]
    lines.append(f"current: {_one_line(current['decision'], 70)} ({_state(current)})")
    if not result["versions"]:
        lines.insert(0, f"{result['id']} has not changed since it was recorded")
    return "\n".join(lines)


def text_supersede(result: dict) -> str:
    made = {"created": " (recorded now)", "already_recorded": " (already recorded)"}.get(result["status"], "")
    chain = " → ".join(i[:8] for i in result["chain"])
    return f"superseded {result['old_id']} by {result['new_id']}{made}\n  chain: {chain}"


def text_link(result: dict) -> str:
    verb = "linked" if result["status"] == "created" else "already linked:"
    return f"{verb} {result['from_id'][:8]} {result['kind']} {result['to_id'][:8]}"


def text_unlink(result: dict) -> str:
    plural = "s" if result["removed"] != 1 else ""
    return f"removed {result['removed']} link{plural} from {result['from_id'][:8]} to {result['to_id'][:8]}"


def text_similar(result: dict) -> str:
    if not result["similar"]:
        return "no similar decision"
    return "\n".join(f"{s['id'][:8]}  {s['score']:.2f}  {_one_line(s['text'], 70)}" for s in result["similar"])
