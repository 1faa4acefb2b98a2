"""Two-way Notion sync of decisions: pull edits made in Notion, then push the vault's changes."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from angles.engines import notion_pages as pages
from angles.engines import vault
from angles.engines.decision_model import parse_timestamp, to_iso, utc_now, validate
from angles.errors import AnglesError, ValidationError
from angles.services.notion import NotionClient, NotionNotFoundError, NotionRejectedError

logger = logging.getLogger(__name__)

LAST_PULL_KEY = "notion_last_pull"
DATA_SOURCE_KEY = "notion_data_source"
# Notion rounds last_edited_time down to the minute, and its Date header to the second.
PULL_OVERLAP = timedelta(minutes=2)
MAX_REPORTED = 20


def _is_uuid(text: str | None) -> bool:
    try:
        uuid.UUID(text or "")
    except ValueError:
        return False
    return True


class SchemaError(AnglesError):
    """The Notion data source lacks properties the sync writes, or holds them with another type."""


def new_counts() -> dict:
    return {
        "pulled": 0,
        "applied": 0,
        "imported": 0,
        "conflicts": 0,
        "skipped": 0,
        "created": 0,
        "updated": 0,
        "archived": 0,
        "unchanged": 0,
        "rejected": 0,
    }


class NotionSync:
    """One sync run against one data source; every row's bookkeeping commits on its own."""

    def __init__(
        self,
        storage,
        client: NotionClient,
        database_id: str,
        *,
        dry_run: bool = False,
        push_all: bool = False,
        progress: Callable[[str, int | None], Callable[[], None]] | None = None,
    ):
        self.storage = storage
        self.client = client
        self.database_id = database_id
        self.dry_run = dry_run
        self.push_all = push_all
        self.progress = progress
        self.counts = new_counts()
        self.problems: list[dict] = []
        self.data_source_id: str | None = None
        self.title_property = "Name"
        # "relation" or "rich_text" when the data source has a "Superseded by" property, else None.
        self.superseded_kind: str | None = None
        # Successors pushed ahead of their turn so a relation can point at their page; their turn skips them.
        self._pushing: set[str] = set()
        self._pushed_early: set[str] = set()
        # In a dry run, decisions the pull would have settled, so the plan does not also push them.
        self._settled: set[str] = set()
        self._bot_id: str | None = None

    # set-up

    def connect(self) -> str:
        """Find the data source (cached in sync state) and check its properties."""
        key = f"{DATA_SOURCE_KEY}:{self.database_id}"
        cached = self.storage.get_state(key)
        source = None
        if cached:
            try:
                source = self.client.retrieve_data_source(cached)
            except NotionNotFoundError:
                source = None
        if source is None:
            source = self.client.retrieve_data_source(self.client.resolve_data_source(self.database_id))
            if not self.dry_run:
                self.storage.set_state(key, source["id"])
        schema = pages.check_schema(source)
        if schema["missing"] or schema["mistyped"]:
            wrong = [f"{m['property']} is {m['actual']}, not {m['expected']}" for m in schema["mistyped"]]
            parts = ([f"missing {', '.join(schema['missing'])}"] if schema["missing"] else []) + wrong
            raise SchemaError(
                f"the Notion database does not have the properties the sync needs ({'; '.join(parts)}); "
                "run: python memory_sync.py --setup-notion"
            )
        self.data_source_id = source["id"]
        self.title_property = schema["title_property"] or "Name"
        self.superseded_kind = schema["superseded_by"]
        return self.data_source_id

    def _sync_hash(self, row: dict) -> str:
        return pages.sync_hash(row, shows_superseded=self.superseded_kind is not None)

    def _problem(self, kind: str, message: str, **ids) -> None:
        logger.warning("%s: %s%s", kind, message, " (dry run)" if self.dry_run else "")
        if len(self.problems) < MAX_REPORTED:
            self.problems.append({"kind": kind, "message": message, **ids})

    def _tick(self, phase: str, total: int | None):
        return self.progress(phase, total) if self.progress else (lambda: None)

    # pull

    def pull(self) -> dict:
        """Apply edits made in Notion since the last pull; import pages people created there."""
        # The mark is read on Notion's clock (the Date of its latest answer, just before the query), since
        # it is compared with Notion's last_edited_time: a vault clock running ahead would skip edits.
        started = to_iso(self.client.notion_time) if self.client.notion_time else utc_now()
        since = self.storage.get_state(LAST_PULL_KEY)
        query_filter = None
        if since:
            after = parse_timestamp(since) - PULL_OVERLAP
            query_filter = {
                "timestamp": "last_edited_time",
                "last_edited_time": {"on_or_after": to_iso(after)},
            }
        tick = self._tick("pull", None)
        seen: set[str] = set()
        # Creation order does not move when pages are edited during the pull, so paging never skips one.
        oldest_first = [{"timestamp": "created_time", "direction": "ascending"}]
        for page in self.client.query(self.data_source_id, query_filter, sorts=oldest_first):
            if page["id"] in seen:
                continue
            seen.add(page["id"])
            self.counts["pulled"] += 1
            try:
                self._pull_page(page)
            except (NotionRejectedError, NotionNotFoundError) as exc:
                self._problem("rejected page", str(exc), page_id=page["id"])
                self.counts["skipped"] += 1
            tick()
        if not self.dry_run:
            self.storage.set_state(LAST_PULL_KEY, started)
        return self.counts

    def _find_row(self, page: dict, fields: dict) -> dict | None:
        row = None
        if _is_uuid(fields["external_id"]):
            row = self.storage.get_decision(str(uuid.UUID(fields["external_id"])))
        return row or self.storage.find_decision_by_page(page["id"])

    def _pull_page(self, page: dict) -> None:
        fields = pages.from_page(page)
        if fields["in_trash"]:
            return
        row = self._find_row(page, fields)
        if row is None:
            self._import(page, fields)
            return
        if row.get("notion_page_id") and row["notion_page_id"] != page["id"]:
            self._drop_duplicate(row, page, fields)
            return
        try:
            incoming = validate({**row, **{f: fields[f] for f in pages.PERSON_FIELDS}}, f"Notion page {page['id']}")
        except ValidationError as exc:
            self._problem("rejected edit", str(exc), decision_id=row["id"], page_id=page["id"])
            self.counts["skipped"] += 1
            return
        successor = self._successor(row, page, fields)
        if successor and not row.get("superseded_by"):
            self._supersede_from_notion(row, page, fields, incoming, successor)
            return
        notion_hash = pages.page_hash(incoming, fields["ai_summary"], successor)
        local_hash = self._sync_hash(row)
        bookkeeping = {
            "notion_page_id": page["id"],
            "notion_last_edited": to_iso(page.get("last_edited_time")),
            "updated_at": row["updated_at"],
        }
        if notion_hash == local_hash:
            # Both sides agree: our own write coming back, or a page found again after a crash.
            stale = row.get("notion_sync_hash") != local_hash or row.get("notion_page_id") != page["id"]
            if stale and not self.dry_run:
                self.storage.update_decision(
                    row["id"],
                    {**bookkeeping, "notion_sync_hash": local_hash, "synced": True, "synced_at": utc_now()},
                )
            return
        if notion_hash == row.get("notion_sync_hash"):
            # Unchanged in Notion; the vault's own change goes out in the push.
            return
        if row.get("notion_sync_hash") is None and self._last_written_by_us(page):
            # Never synced from this row, and the page holds what an interrupted run wrote: the vault wins.
            # A page a person edited since (or made, for an interrupted import) is a conflict (below).
            if not self.dry_run and row.get("notion_page_id") != page["id"]:
                self.storage.update_decision(row["id"], bookkeeping)
            return
        if local_hash != row["notion_sync_hash"]:
            winner = self._newer(row, page)
            self._record_conflict(row, incoming, page, winner)
            self.counts["conflicts"] += 1
            if winner == "database":
                # The push below overwrites the page with the vault's version.
                return
        self.counts["applied"] += 1
        if self.dry_run:
            self._settled.add(row["id"])
            return
        changes = {f: incoming[f] for f in pages.PERSON_FIELDS}
        if row.get("superseded_by") and changes["active"]:
            # Superseding is decided in the vault; a checked box in Notion must not bring the decision back.
            # The stored hash is the page's, so the push below unchecks it again.
            changes["active"] = False
            self._problem(
                "kept inactive",
                f"page {page['id']} marks decision {row['id']} active, but it is superseded by "
                f"{row['superseded_by']}; Active is unchecked again",
                decision_id=row["id"],
                page_id=page["id"],
            )
        if incoming["type"] != row["type"]:
            changes["type_source"] = "person"
        if incoming.get("priority") != row.get("priority"):
            changes["priority_source"] = "person" if incoming.get("priority") else None
        self.storage.update_decision(
            row["id"],
            {
                **changes,
                **bookkeeping,
                "updated_at": utc_now(),
                "notion_sync_hash": notion_hash,
                "synced": True,
                "synced_at": utc_now(),
            },
            source="notion",
        )

    def _successor(self, row: dict, page: dict, fields: dict) -> str | None:
        """The decision a page's "Superseded by" names, as a vault id; None when it names none (or none known)."""
        named = fields.get("superseded_by")
        if not named or self.superseded_kind is None:
            return None
        found = None
        if "page" in named:
            target = self.storage.find_decision_by_page(named["page"])
            found = target["id"] if target else None
        else:
            try:
                found = vault.resolve(self.storage, named["text"])
            except AnglesError:
                found = None
        if found is None:
            self._problem(
                "unknown successor",
                f"page {page['id']} is superseded by {next(iter(named.values()))}, which is no decision in the vault",
                decision_id=row["id"],
                page_id=page["id"],
            )
        return found

    def _supersede_from_notion(self, row: dict, page: dict, fields: dict, incoming: dict, successor: str) -> None:
        """A person set "Superseded by" in Notion: supersede in the vault (with the page's other edits); the push
        then turns the page's Active off."""
        self.counts["applied"] += 1
        if self.dry_run:
            self._settled.add(row["id"])
            return
        changes = {f: incoming[f] for f in pages.PERSON_FIELDS if f != "active" and incoming[f] != row[f]}
        if changes:
            self.storage.update_decision(row["id"], {**changes, "updated_at": utc_now()}, source="notion")
        try:
            vault.supersede(self.storage, row["id"], new_id=successor, reason="set in Notion", source="notion")
        except AnglesError as exc:
            self.counts["applied"] -= 1
            self.counts["skipped"] += 1
            self._problem("rejected supersede", str(exc), decision_id=row["id"], page_id=page["id"])
            return
        stored = self.storage.get_decision(row["id"])
        # The page as it is now counts as seen, so the next pull does not apply it again; the push rewrites it.
        self.storage.update_decision(
            row["id"],
            {
                "notion_page_id": page["id"],
                "notion_last_edited": to_iso(page.get("last_edited_time")),
                "notion_sync_hash": pages.page_hash(incoming, fields["ai_summary"], successor),
                "updated_at": stored["updated_at"],
            },
        )

    def _last_written_by_us(self, page: dict) -> bool:
        """Whether this integration made the page's last edit (one users/me request per run, only when asked)."""
        if self._bot_id is None:
            self._bot_id = self.client.me().get("id")
        return (page.get("last_edited_by") or {}).get("id") == self._bot_id

    def _drop_duplicate(self, row: dict, page: dict, fields: dict) -> None:
        """A second live page with a decision's External ID goes to the trash; content it adds is kept as a conflict.

        It is a page the sync replaced after a person trashed it (then restored), or a duplicated page.
        """
        self._problem(
            "duplicate page",
            f"page {page['id']} carries the External ID of decision {row['id']}, whose page is "
            f"{row['notion_page_id']}; moved to the trash",
            decision_id=row["id"],
            page_id=page["id"],
        )
        if self.dry_run:
            return
        shown = {**row, **{f: fields[f] for f in pages.PERSON_FIELDS}}
        try:
            shown = validate(shown, f"Notion page {page['id']}")
        except ValidationError:
            pass
        if pages.page_hash(shown, fields["ai_summary"]) not in (pages.sync_hash(row), row.get("notion_sync_hash")):
            self._record_conflict(row, shown, page, "database")
            self.counts["conflicts"] += 1
        self.client.update_page(page["id"], in_trash=True)
        self.counts["archived"] += 1

    @staticmethod
    def _newer(row: dict, page: dict) -> str:
        """Which side's edit is newer; Notion's minute-rounded time wins a tie within the same minute."""
        local = parse_timestamp(row["updated_at"]).replace(second=0, microsecond=0)
        remote = parse_timestamp(page["last_edited_time"]).replace(second=0, microsecond=0)
        return "database" if local > remote else "notion"

    def _record_conflict(self, row: dict, incoming: dict, page: dict, winner: str) -> None:
        database = {f: row.get(f) for f in pages.PERSON_FIELDS}
        database["updated_at"] = row["updated_at"]
        notion = {f: incoming.get(f) for f in pages.PERSON_FIELDS}
        notion["last_edited_time"] = page.get("last_edited_time")
        details = {
            "decision_id": row["id"],
            "page_id": page["id"],
            "winner": winner,
            "database": database,
            "notion": notion,
        }
        logger.warning(
            "conflict on decision %s: changed in the database and in Notion; the %s edit is newer and wins%s",
            row["id"],
            winner,
            " (dry run)" if self.dry_run else "",
        )
        if not self.dry_run:
            self.storage.record_activity(
                "memory_sync", "conflict", "resolved", json.dumps(details, ensure_ascii=False, default=str)
            )

    def _import(self, page: dict, fields: dict) -> None:
        """A page a person created in Notion becomes a decision, and its External ID is written back."""
        record = {f: fields[f] for f in pages.PERSON_FIELDS}
        if fields["external_id"]:
            record["id"] = fields["external_id"]
        try:
            row = validate(record, f"Notion page {page['id']}")
        except ValidationError as exc:
            self._problem("rejected page", str(exc), page_id=page["id"])
            self.counts["skipped"] += 1
            return
        self.counts["imported"] += 1
        if self.dry_run:
            return
        now = utc_now()
        row.update(
            {
                "notion_page_id": page["id"],
                "notion_last_edited": to_iso(page.get("last_edited_time")),
                "created_at": now,
                "updated_at": now,
            }
        )
        self.storage.upsert_decisions([row])
        row = self.storage.get_decision(row["id"])
        written = self.client.update_page(page["id"], properties=pages.to_properties(row, self.title_property))
        self.storage.update_decision(
            row["id"],
            {
                "notion_sync_hash": self._sync_hash(row),
                "notion_last_edited": to_iso(written.get("last_edited_time")),
                "synced": True,
                "synced_at": utc_now(),
                "updated_at": row["updated_at"],
            },
        )

    # push

    def push(self) -> dict:
        """Write every row whose page content changed (all rows with push_all), one row at a time."""
        tick = self._tick("push", self.storage.count_decisions() if self.progress else None)
        for row in self.storage.iter_decisions():
            self._push_row(row)
            tick()
        return self.counts

    def _push_row(self, row: dict) -> None:
        if row["id"] in self._pushed_early:
            return
        wanted = self._sync_hash(row)
        page_id = row.get("notion_page_id")
        if page_id and row.get("notion_sync_hash") == wanted and not self.push_all:
            self.counts["unchanged"] += 1
            return
        if row.get("deleted_at") and not page_id and not row.get("notion_attempted_at"):
            # Never reached Notion: nothing to archive.
            self.counts["unchanged"] += 1
            return
        try:
            properties = None if row.get("deleted_at") else pages.to_properties(row, self.title_property)
            if properties is not None and row.get("superseded_by") and self.superseded_kind:
                successor = self._successor_page(row)
                value = pages.superseded_property(self.superseded_kind, row["superseded_by"], successor)
                if value is None:
                    # No page to point at yet: written without it, and the hash says so, so a later run adds it.
                    wanted = pages.sync_hash(row)
                else:
                    properties[pages.SUPERSEDED_BY] = value
        except ValidationError as exc:
            self._problem("rejected decision", str(exc), decision_id=row["id"])
            self.counts["rejected"] += 1
            return
        action = "archived" if row.get("deleted_at") else ("updated" if page_id else "created")
        if self.dry_run:
            self.counts["unchanged" if row["id"] in self._settled else action] += 1
            return
        try:
            if not page_id and row.get("notion_attempted_at"):
                # An earlier run may have created the page and died before recording it.
                found = self._find_page(row["id"])
                if found:
                    page_id = found["id"]
                    action = "archived" if row.get("deleted_at") else "updated"
            if row.get("deleted_at"):
                if not page_id:
                    self.counts["unchanged"] += 1
                    return
                page = self._archive(row, page_id)
            elif page_id:
                page = self._update(row, page_id, properties)
                if page is None:
                    page, action = self._create(row, properties), "created"
            else:
                page = self._create(row, properties)
        except NotionRejectedError as exc:
            self._problem("rejected decision", str(exc), decision_id=row["id"])
            self.counts["rejected"] += 1
            return
        self.counts[action] += 1
        self.storage.update_decision(
            row["id"],
            {
                "notion_page_id": page["id"],
                "notion_sync_hash": wanted,
                "notion_last_edited": to_iso(page.get("last_edited_time")),
                "synced": True,
                "synced_at": utc_now(),
                "updated_at": row["updated_at"],
            },
        )

    def _successor_page(self, row: dict) -> str | None:
        """The page of the decision that supersedes `row`, pushing that decision first if it has none yet."""
        successor = self.storage.get_decision(row["superseded_by"])
        if successor is None:
            return None
        if self.superseded_kind == "relation" and not successor.get("notion_page_id") and not self.dry_run:
            if successor["id"] not in self._pushing:
                self._pushing.add(row["id"])
                try:
                    self._push_row(successor)
                    self._pushed_early.add(successor["id"])
                finally:
                    self._pushing.discard(row["id"])
                successor = self.storage.get_decision(successor["id"]) or successor
        return successor.get("notion_page_id")

    def _update(self, row: dict, page_id: str, properties: dict) -> dict | None:
        """Update the row's page; None when the page no longer exists in Notion."""
        try:
            return self.client.update_page(page_id, properties=properties, in_trash=False)
        except NotionNotFoundError:
            logger.warning("page %s of decision %s is gone from Notion; creating a new one", page_id, row["id"])
            return None

    def _archive(self, row: dict, page_id: str) -> dict:
        try:
            return self.client.update_page(page_id, in_trash=True)
        except NotionNotFoundError:
            logger.info("page %s of deleted decision %s is already gone from Notion", page_id, row["id"])
            return {"id": page_id}

    def _find_page(self, decision_id: str) -> dict | None:
        query = {"property": pages.EXTERNAL_ID, "rich_text": {"equals": decision_id}}
        return next(iter(self.client.query(self.data_source_id, query)), None)

    def _create(self, row: dict, properties: dict) -> dict:
        """Create the row's page, recording the attempt first so a crash never leads to a second page."""
        self.storage.update_decision(row["id"], {"notion_attempted_at": utc_now(), "updated_at": row["updated_at"]})
        return self.client.create_page(self.data_source_id, properties, lambda: self._find_page(row["id"]))
