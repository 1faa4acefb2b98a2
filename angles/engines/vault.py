"""The searchable vault: record with a duplicate check, search, edit with history, supersede, link, describe.

Every door (the decisions CLI, the assistants' MCP server, the dashboard) goes through these functions, so the
same validation, duplicate rule and history apply whoever writes. Each takes an open storage backend.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import date

from angles.engines import search_query
from angles.engines.decision_model import (
    LINK_KINDS,
    PRIORITIES,
    TYPES,
    check_source,
    link_id,
    normalise_text,
    utc_now,
    validate,
)
from angles.errors import NotFoundError, ValidationError

MIN_PREFIX = 8
MAX_TEXT = 20_000
MAX_LIMIT = 200
# Below this word overlap a decision is not worth naming as similar to a new one.
SIMILAR_MIN_SCORE = 0.25
SIMILAR_CANDIDATES = 10
# Similarity looks at a text's first this many characters: a long memo's opening says what it decides.
SIMILAR_CHARS = 1500
# Fields a person may give when recording or editing.
RECORD_FIELDS = ("decision", "type", "priority", "tags", "comment", "date")
EDIT_FIELDS = (*RECORD_FIELDS, "active")
CHAIN_LIMIT = 1000
_PREFIX = re.compile(r"[0-9a-f-]+")


def _fields(fields: dict, allowed: tuple[str, ...]) -> dict:
    if not isinstance(fields, dict):
        raise ValidationError("the decision's fields must be given as an object")
    out = {}
    for key, value in fields.items():
        name = "decision" if key == "text" else key
        if name not in allowed:
            raise ValidationError(f"{key!r} cannot be set here (one of {', '.join(allowed)})")
        out[name] = value
    if isinstance(out.get("decision"), str) and len(out["decision"]) > MAX_TEXT:
        raise ValidationError(f"the decision text is {len(out['decision'])} characters long; at most {MAX_TEXT}")
    return out


def resolve(storage, id_or_prefix: str) -> str:
    """The full id of one decision from its id or a unique prefix of at least 8 characters."""
    ident = str(id_or_prefix or "").strip().lower()
    try:
        full = str(uuid.UUID(ident))
    except ValueError:
        full = None
    if full is not None:
        if storage.get_decision(full) is None:
            raise NotFoundError(f"no decision with id {full}")
        return full
    if not _PREFIX.fullmatch(ident):
        raise ValidationError(f"{id_or_prefix!r} is not a decision id (hex digits, at least {MIN_PREFIX})")
    digits = ident.replace("-", "")
    if len(digits) < MIN_PREFIX:
        raise ValidationError(f"id prefix {ident!r} is too short: give at least {MIN_PREFIX} characters")
    if len(digits) > 32:
        raise ValidationError(f"{ident!r} is not a decision id")
    low = str(uuid.UUID(digits.ljust(32, "0")))
    high = str(uuid.UUID(digits.ljust(32, "f")))
    if not low.startswith(ident):
        raise ValidationError(f"{ident!r} is not the start of a decision id (dashes go after 8, 12, 16, 20 digits)")
    found = storage.ids_between(low, high, 2)
    if not found:
        raise NotFoundError(f"no decision with an id starting {ident!r}")
    if len(found) > 1:
        raise ValidationError(f"id prefix {ident!r} matches several decisions; give more of it")
    return found[0]


def _get(storage, decision_id: str) -> dict:
    row = storage.get_decision(decision_id)
    if row is None:
        raise NotFoundError(f"no decision with id {decision_id}")
    return row


def _key_words(text: str) -> set[str]:
    """Words that carry meaning, folded so that case, accents and plural endings do not count."""
    folded = str(text)[:SIMILAR_CHARS].casefold()
    if not folded.isascii():
        folded = "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))
    out = set()
    for word in search_query.words_of(folded):
        if word in search_query.STOP_WORDS:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        out.add(word)
    return out


def _score(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    return round(len(a & b) / len(a | b), 3)


def _similar_to(storage, text: str, *, exclude: set[str], limit: int, floor: float) -> list[dict]:
    mine = _key_words(text)
    ranked = []
    words = search_query.words_of(text[:SIMILAR_CHARS])
    for row in storage.similar_candidates(words, limit=SIMILAR_CANDIDATES):
        if row["id"] in exclude:
            continue
        score = _score(mine, _key_words(row["decision"]))
        if score >= floor and score > 0:
            ranked.append((score, row))
    ranked.sort(key=lambda pair: (-pair[0], pair[1]["date"]), reverse=False)
    return [
        {
            "id": row["id"],
            "text": row["decision"],
            "score": score,
            "type": row["type"],
            "date": row["date"],
            "active": row["active"],
        }
        for score, row in ranked[:limit]
    ]


def find_duplicate(storage, text: str) -> dict | None:
    """The live decision with the same text (case, spacing and trailing punctuation aside), if there is one."""
    wanted = normalise_text(text)
    words = search_query.words_of(wanted)
    for row in storage.same_text_candidates(words, str(text)):
        if normalise_text(row["decision"]) == wanted:
            return row
    return None


def record(storage, fields: dict, *, source: str, supersedes: str | None = None) -> dict:
    """Store a new decision unless the same one is already live; name the most similar ones.

    Returns {"id", "status": "created" | "already_recorded", "similar": [{"id", "text", "score"}], "decision"}.
    """
    source = check_source(source)
    record_fields = _fields(fields, RECORD_FIELDS)
    row = validate(record_fields, "decision")
    old_id = resolve(storage, supersedes) if supersedes else None
    existing = find_duplicate(storage, row["decision"])
    if existing is not None:
        result = {"id": existing["id"], "status": "already_recorded", "similar": [], "decision": existing}
    else:
        similar = _similar_to(storage, row["decision"], exclude=set(), limit=3, floor=SIMILAR_MIN_SCORE)
        stored = storage.add_decision(row, source=source)
        if stored is None:
            raise NotFoundError(f"no decision with id {row['id']}")
        result = {"id": row["id"], "status": "created", "similar": similar, "decision": stored}
    if old_id is not None:
        outcome = supersede(storage, old_id, new_id=result["id"], source=source)
        result["supersedes"] = outcome["old_id"]
    return result


def _date_arg(value, flag: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise ValidationError(f"{flag} {value!r} is not a date (YYYY-MM-DD)") from None


def _mark(snippet: str, marks: tuple[str, str]) -> str:
    flat = " ".join((snippet or "").split())
    return flat.replace(search_query.MARK_START, marks[0]).replace(search_query.MARK_END, marks[1])


def search(
    storage,
    query: str,
    *,
    type: str | None = None,
    priority: str | None = None,
    tag: str | None = None,
    since: str | None = None,
    until: str | None = None,
    include_inactive: bool = False,
    limit: int = 20,
    marks: tuple[str, str] = ("[", "]"),
) -> list[dict]:
    """Decisions matching the query language, best first; superseded and inactive ones only when asked.

    Each hit: id, text, type, priority, date, active, superseded_by, score, snippet (matches between `marks`).
    """
    parsed = search_query.parse(query)
    if type is not None:
        type = str(type).strip().lower()
        if type not in TYPES:
            raise ValidationError(f"type {type!r} is unknown (one of {', '.join(TYPES)})")
    if priority is not None:
        priority = str(priority).strip().upper()
        if priority not in PRIORITIES:
            raise ValidationError(f"priority {priority!r} is unknown (one of {', '.join(PRIORITIES)})")
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise ValidationError(f"limit {limit!r} is not a number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit {limit} is out of range (1 to {MAX_LIMIT})")
    hits = storage.search_decisions(
        parsed,
        type=type,
        priority=priority,
        tag=str(tag).strip() if tag not in (None, "") else None,
        since=_date_arg(since, "since"),
        until=_date_arg(until, "until"),
        include_inactive=bool(include_inactive),
        limit=limit,
    )
    return [
        {
            "id": hit["id"],
            "text": hit["decision"],
            "type": hit["type"],
            "priority": hit["priority"],
            "date": hit["date"],
            "tags": hit["tags"],
            "active": hit["active"] and not hit["superseded_by"] and not hit["deleted_at"],
            "superseded_by": hit["superseded_by"],
            "score": hit["score"],
            "snippet": _mark(hit["snippet"], marks),
        }
        for hit in hits
    ]


def edit(storage, decision_id: str, changes: dict, *, source: str) -> dict:
    """Change some fields of one decision, keeping the version before in its history.

    Returns {"id", "changed": [field names], "decision": the decision as now stored}.
    """
    source = check_source(source)
    changes = _fields(changes, EDIT_FIELDS)
    if not changes:
        raise ValidationError("nothing to change: give at least one field")
    decision_id = resolve(storage, decision_id)
    current = _get(storage, decision_id)
    if changes.get("active") and current["superseded_by"]:
        raise ValidationError(
            f"decision {decision_id} is superseded by {current['superseded_by']}; it cannot be made active again"
        )
    merged = validate({**{f: current[f] for f in EDIT_FIELDS}, **changes, "id": decision_id}, "decision")
    fields = {f: merged[f] for f in changes if merged[f] != current[f]}
    if not fields:
        return {"id": decision_id, "changed": [], "decision": current}
    if "type" in fields and source != "ai":
        fields["type_source"] = "person"
    if "priority" in fields and source != "ai":
        fields["priority_source"] = "person"
    storage.update_decision(decision_id, fields, source=source)
    return {
        "id": decision_id,
        "changed": [f for f in EDIT_FIELDS if f in fields],
        "decision": _get(storage, decision_id),
    }


def history(storage, decision_id: str) -> list[dict]:
    """Every earlier version of a decision, oldest first: its fields then, when and by what it changed, and how."""
    decision_id = resolve(storage, decision_id)
    current = _get(storage, decision_id)
    rows = storage.history_of(decision_id)
    versions = []
    for number, row in enumerate(rows, 1):
        after = rows[number]["previous"] if number < len(rows) else current
        versions.append(
            {
                "version": number,
                "changed_at": row["changed_at"],
                "source": row["source"],
                "reason": row["reason"],
                "fields": row["previous"],
                "changed": {f: {"from": row["previous"].get(f), "to": after.get(f)} for f in row["changed"]},
            }
        )
    return versions


def _chain_forward(storage, start: dict) -> list[dict]:
    chain, seen, row = [start], {start["id"]}, start
    while row["superseded_by"] and len(chain) < CHAIN_LIMIT:
        nxt = storage.get_decision(row["superseded_by"])
        if nxt is None or nxt["id"] in seen:
            break
        chain.append(nxt)
        seen.add(nxt["id"])
        row = nxt
    return chain


def _chain_back(storage, start: dict) -> list[dict]:
    chain, seen, row = [], {start["id"]}, start
    while len(chain) < CHAIN_LIMIT:
        earlier = [r for r in storage.superseded_into(row["id"]) if r["id"] not in seen]
        if not earlier:
            break
        row = min(earlier, key=lambda r: (r["created_at"] or "", r["id"]))
        chain.insert(0, row)
        seen.add(row["id"])
    return chain


def supersede(
    storage,
    old_id: str,
    *,
    new_id: str | None = None,
    new_fields: dict | None = None,
    reason: str | None = None,
    source: str,
) -> dict:
    """Replace a decision by another (existing, or recorded from new_fields): the old one turns inactive and
    points to the new one; its text stays. Refuses an already superseded decision and a cycle.

    Returns {"old_id", "new_id", "status" (of the new decision: "existing", "created" or "already_recorded"),
    "reason", "chain"}.
    """
    source = check_source(source)
    if (new_id is None) == (new_fields is None):
        raise ValidationError("give either the id of the new decision or the text of a new one, not both")
    if reason is not None and len(str(reason)) > MAX_TEXT:
        raise ValidationError(f"the reason is {len(str(reason))} characters long; at most {MAX_TEXT}")
    old_id = resolve(storage, old_id)
    old = _get(storage, old_id)
    if old["superseded_by"]:
        raise ValidationError(f"decision {old_id} is already superseded by {old['superseded_by']}")
    status = "existing"
    if new_id is not None:
        new_id = resolve(storage, new_id)
    else:
        _fields(new_fields, RECORD_FIELDS)
    if new_id is None:
        recorded = record(storage, new_fields, source=source)
        new_id, status = recorded["id"], recorded["status"]
    if new_id == old_id:
        raise ValidationError(f"decision {old_id} cannot supersede itself")
    if any(r["id"] == old_id for r in _chain_forward(storage, _get(storage, new_id))):
        raise ValidationError(f"superseding {old_id} by {new_id} would make a cycle ({new_id} leads back to it)")
    storage.update_decision(
        old_id,
        {"active": False, "superseded_by": new_id},
        source=source,
        reason=str(reason).strip() if reason not in (None, "") else None,
    )
    chain = [r["id"] for r in _chain_back(storage, old) + _chain_forward(storage, _get(storage, old_id))]
    return {"old_id": old_id, "new_id": new_id, "status": status, "reason": reason, "chain": chain}


def _kind(kind: str) -> str:
    text = str(kind or "").strip().lower()
    if text not in LINK_KINDS:
        raise ValidationError(f"link kind {kind!r} is unknown (one of {', '.join(LINK_KINDS)})")
    return text


def link(storage, from_id: str, to_id: str, kind: str, *, source: str) -> dict:
    """Link one decision to another.

    Returns {"id", "from_id", "to_id", "kind", "status": "created" | "already_linked"}.
    """
    source = check_source(source)
    kind = _kind(kind)
    from_id, to_id = resolve(storage, from_id), resolve(storage, to_id)
    if from_id == to_id:
        raise ValidationError("a decision cannot be linked to itself")
    row = {
        "id": link_id(from_id, to_id, kind),
        "from_id": from_id,
        "to_id": to_id,
        "kind": kind,
        "source": source,
        "created_at": utc_now(),
    }
    added = storage.add_link(row)
    return {
        **{k: row[k] for k in ("id", "from_id", "to_id", "kind")},
        "status": "created" if added else "already_linked",
    }


def unlink(storage, from_id: str, to_id: str, kind: str | None = None) -> int:
    """Remove the links from one decision to another (of one kind, or every kind); returns how many went."""
    kind = _kind(kind) if kind is not None else None
    return storage.remove_links(resolve(storage, from_id), resolve(storage, to_id), kind)


def _supersede_reason(storage, decision_id: str) -> str | None:
    for row in reversed(storage.history_of(decision_id)):
        if "superseded_by" in row["changed"]:
            return row["reason"]
    return None


def describe(storage, decision_id: str) -> dict:
    """Everything known about one decision: its fields, history, links both ways and supersede chain.

    Returns {"decision", "history", "links": [{"id", "kind", "direction": "out" | "in", "other_id", "other_text"}],
    "chain": [ids oldest to newest], "reason": why it was superseded, "supersedes": [ids it replaced],
    "reasons": {old id: reason} for each step of the chain}.
    """
    decision_id = resolve(storage, decision_id)
    row = _get(storage, decision_id)
    links = []
    for item in storage.links_of(decision_id):
        outgoing = item["from_id"] == decision_id
        other_id = item["to_id"] if outgoing else item["from_id"]
        other = storage.get_decision(other_id)
        links.append(
            {
                "id": item["id"],
                "kind": item["kind"],
                "direction": "out" if outgoing else "in",
                "other_id": other_id,
                "other_text": other["decision"] if other else None,
                "source": item["source"],
                "created_at": item["created_at"],
            }
        )
    chain_rows = _chain_back(storage, row) + _chain_forward(storage, row)
    reasons = {r["id"]: _supersede_reason(storage, r["id"]) for r in chain_rows if r["superseded_by"]}
    return {
        "decision": row,
        "history": history(storage, decision_id),
        "links": links,
        "chain": [r["id"] for r in chain_rows],
        "reason": reasons.get(decision_id),
        "supersedes": [r["id"] for r in storage.superseded_into(decision_id)],
        "reasons": reasons,
    }


def similar(storage, id_or_text: str, limit: int = 3) -> list[dict]:
    """The decisions closest in wording to a stored decision (by id or prefix) or to a text.

    Returns [{"id", "text", "score" (shared meaningful words, 0 to 1), "type", "date", "active"}], best first.
    """
    text = str(id_or_text or "")
    exclude: set[str] = set()
    if _PREFIX.fullmatch(text.strip().lower()) and len(text.strip().replace("-", "")) >= MIN_PREFIX:
        try:
            found = resolve(storage, text)
        except NotFoundError:
            found = None
        if found:
            exclude.add(found)
            text = _get(storage, found)["decision"]
    if not text.strip():
        raise ValidationError("give a decision id or some text to compare")
    if len(text) > MAX_TEXT:
        raise ValidationError(f"the text is {len(text)} characters long; at most {MAX_TEXT}")
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise ValidationError(f"limit {limit!r} is not a number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit {limit} is out of range (1 to {MAX_LIMIT})")
    return _similar_to(storage, text, exclude=exclude, limit=limit, floor=0.0)
