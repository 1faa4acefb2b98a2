"""How a decision looks as a Notion page, and back."""

from __future__ import annotations

from angles.engines.decision_model import PRIORITIES, TYPES, content_hash
from angles.errors import ValidationError

# Property name -> Notion property type. The title property is found by type, whatever its name.
PROPERTIES = {
    "Name": "title",
    "Decision": "rich_text",
    "Type": "select",
    "Priority": "select",
    "Date": "date",
    "Active": "checkbox",
    "Tags": "multi_select",
    "Comment": "rich_text",
    "AI summary": "rich_text",
    "External ID": "rich_text",
}
EXTERNAL_ID = "External ID"
# Optional: a relation to the same data source (or, where one cannot be made, a text holding the decision id).
SUPERSEDED_BY = "Superseded by"
SUPERSEDED_KINDS = ("relation", "rich_text")

# Notion counts text.content in UTF-16 code units and takes at most 100 rich-text items per property.
TEXT_LIMIT = 2000
ITEMS_LIMIT = 100
TITLE_LENGTH = 100

# What a person edits on either side; the AI summary only flows from the vault to Notion.
PERSON_FIELDS = ("decision", "date", "type", "priority", "tags", "active", "comment")
SYNC_FIELDS = (*PERSON_FIELDS, "deleted_at", "ai_summary")


def ai_summary(row: dict) -> str | None:
    analysis = row.get("ai_analysis")
    if isinstance(analysis, dict):
        summary = analysis.get("summary")
        if summary not in (None, ""):
            return str(summary)
    return None


def _hash(view: dict, superseded_by: str | None) -> str:
    # A decision nobody superseded hashes as it did before the property existed: no page needs rewriting.
    if superseded_by:
        return content_hash({**view, "superseded_by": superseded_by}, (*SYNC_FIELDS, "superseded_by"))
    return content_hash(view, SYNC_FIELDS)


def sync_hash(row: dict, *, shows_superseded: bool = False) -> str:
    """The hash of everything the page shows; equal hashes mean the page needs no write.

    `shows_superseded`: the data source has a "Superseded by" property, so the page shows that too.
    """
    view = {f: row.get(f) for f in PERSON_FIELDS}
    view.update(deleted_at=row.get("deleted_at"), ai_summary=ai_summary(row))
    return _hash(view, row.get("superseded_by") if shows_superseded else None)


def page_hash(fields: dict, summary: str | None, superseded_by: str | None = None) -> str:
    """The same hash for a live page (not in the trash) holding `fields`, an AI summary and a successor."""
    view = {f: fields.get(f) for f in PERSON_FIELDS}
    view.update(deleted_at=None, ai_summary=summary)
    return _hash(view, superseded_by)


def superseded_property(kind: str, successor_id: str, successor_page: str | None) -> dict | None:
    """The "Superseded by" value naming the successor; None when a relation has no page to point at yet."""
    if kind == "relation":
        return {"relation": [{"id": successor_page}]} if successor_page else None
    return {"rich_text": rich_text(successor_id, "successor id")}


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut text into pieces of at most `limit` UTF-16 units, never inside a character."""
    pieces = []
    start = 0
    while start < len(text):
        end = min(len(text), start + limit)
        over = utf16_units(text[start:end]) - limit
        while over > 0:
            # Each character dropped frees one or two units.
            end -= max(1, over // 2)
            over = utf16_units(text[start:end]) - limit
        pieces.append(text[start:end])
        start = end
    return pieces


def rich_text(text: str | None, what: str) -> list[dict]:
    if not text:
        return []
    pieces = split_text(text)
    if len(pieces) > ITEMS_LIMIT:
        raise ValidationError(
            f"{what} is {utf16_units(text):,} UTF-16 units long; a Notion property holds at most "
            f"{ITEMS_LIMIT * TEXT_LIMIT:,}"
        )
    return [{"type": "text", "text": {"content": p}} for p in pieces]


def title_of(text: str) -> str:
    """The first line of a decision, cut at a word boundary to a readable length."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(line) <= TITLE_LENGTH:
        return line
    cut = line[: TITLE_LENGTH - 1]
    if " " in cut[TITLE_LENGTH // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "\u2026"


def to_properties(row: dict, title_property: str) -> dict:
    """The page properties for one decision; raises ValidationError when Notion could not hold it."""
    where = f"decision {row['id']}"
    priority = row.get("priority")
    return {
        title_property: {"title": rich_text(title_of(row["decision"]), f"{where} title")},
        "Decision": {"rich_text": rich_text(row["decision"], f"{where} text")},
        "Type": {"select": {"name": row["type"]}},
        "Priority": {"select": {"name": priority} if priority else None},
        "Date": {"date": {"start": row["date"]} if row.get("date") else None},
        "Active": {"checkbox": bool(row.get("active", True))},
        "Tags": {"multi_select": [{"name": t} for t in (row.get("tags") or [])][:ITEMS_LIMIT]},
        "Comment": {"rich_text": rich_text(row.get("comment"), f"{where} comment")},
        "AI summary": {"rich_text": rich_text(ai_summary(row), f"{where} AI summary")},
        EXTERNAL_ID: {"rich_text": rich_text(row["id"], f"{where} id")},
    }


def _plain(items: list | None) -> str:
    out = []
    for item in items or []:
        if item.get("type", "text") == "text" and isinstance(item.get("text"), dict):
            out.append(item["text"].get("content", ""))
        else:
            out.append(item.get("plain_text", ""))
    return "".join(out)


def _value(prop: dict | None):
    if not prop:
        return None
    return prop.get(prop.get("type"))


def from_page(page: dict) -> dict:
    """The decision fields a page holds (not yet validated), plus its External ID and edit time."""
    props = page.get("properties") or {}
    title = next((p for p in props.values() if p.get("type") == "title"), None)
    text = _plain(_value(props.get("Decision")))
    if not text.strip():
        text = _plain(_value(title))
    kind = _value(props.get("Type"))
    priority = _value(props.get("Priority"))
    date = _value(props.get("Date"))
    active = _value(props.get("Active"))
    comment = _plain(_value(props.get("Comment")))
    return {
        "decision": text,
        "type": kind.get("name") if isinstance(kind, dict) else None,
        "priority": priority.get("name") if isinstance(priority, dict) else None,
        "date": (date.get("start") or "")[:10] if isinstance(date, dict) else None,
        "active": True if active is None else bool(active),
        "tags": [o.get("name") for o in (_value(props.get("Tags")) or []) if o.get("name")],
        "comment": comment or None,
        "ai_summary": _plain(_value(props.get("AI summary"))) or None,
        "external_id": _plain(_value(props.get(EXTERNAL_ID))).strip() or None,
        "superseded_by": _successor(props.get(SUPERSEDED_BY)),
        "last_edited_time": page.get("last_edited_time"),
        "in_trash": bool(page.get("in_trash") or page.get("archived")),
    }


def _successor(prop: dict | None) -> dict | None:
    """What a page's "Superseded by" names: {"page": id} for a relation, {"text": ...} for a text property."""
    if not prop:
        return None
    if prop.get("type") == "relation":
        linked = [item.get("id") for item in prop.get("relation") or [] if isinstance(item, dict)]
        return {"page": linked[0]} if linked else None
    if prop.get("type") == "rich_text":
        text = _plain(prop.get("rich_text")).strip()
        return {"text": text} if text else None
    return None


def check_schema(data_source: dict) -> dict:
    """Which expected properties the data source lacks or holds with another type, and how it shows successors."""
    props = data_source.get("properties") or {}
    title = next((name for name, p in props.items() if p.get("type") == "title"), None)
    missing, mistyped = [], []
    for name, kind in PROPERTIES.items():
        if kind == "title":
            continue
        actual = props.get(name, {}).get("type")
        if actual is None:
            missing.append(name)
        elif actual != kind:
            mistyped.append({"property": name, "expected": kind, "actual": actual})
    successor = props.get(SUPERSEDED_BY, {}).get("type")
    return {
        "title_property": title,
        "missing": missing,
        "mistyped": mistyped,
        "superseded_by": successor if successor in SUPERSEDED_KINDS else None,
    }


def setup_properties(missing: list[str]) -> dict:
    """The data-source PATCH body that adds the missing properties."""
    schema = {
        "Decision": {"rich_text": {}},
        "Type": {"select": {"options": [{"name": t} for t in TYPES]}},
        "Priority": {"select": {"options": [{"name": p} for p in PRIORITIES]}},
        "Date": {"date": {}},
        "Active": {"checkbox": {}},
        "Tags": {"multi_select": {"options": []}},
        "Comment": {"rich_text": {}},
        "AI summary": {"rich_text": {}},
        EXTERNAL_ID: {"rich_text": {}},
    }
    return {name: schema[name] for name in missing if name in schema}


def superseded_schema(kind: str, data_source_id: str) -> dict:
    """The data-source PATCH body adding "Superseded by": a relation to the same data source, or a text."""
    if kind == "relation":
        config = {"relation": {"data_source_id": data_source_id, "type": "single_property", "single_property": {}}}
    else:
        config = {"rich_text": {}}
    return {SUPERSEDED_BY: config}
