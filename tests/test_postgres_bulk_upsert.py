"""PostgreSQL's bulk upsert (COPY into a staging table, then one merge) keeps every value and the row order rules."""

from __future__ import annotations

import pytest

from angles.engines.decision_model import validate
from angles.storage import migrations

pytestmark = pytest.mark.postgres


@pytest.fixture
def storage(pg_url):
    from angles.storage.postgres import PostgresStorage

    with PostgresStorage(pg_url) as store:
        migrations.migrate(store)
        yield store


def decision(n: int, **extra) -> dict:
    return validate({"decision": f"Decision {n}", "type": "technical", "date": "2025-03-01", **extra}, f"row {n}")


def test_text_with_copy_control_characters_comes_back_unchanged(storage):
    awkward = "tab\there\nnew line\r\nback\\slash \\N literal \\t not a tab, ünï 🚀"
    row = decision(
        1,
        decision=awkward,
        comment="\\",
        tags=["a\tb", "c\\d", 'quote"s'],
        ai_analysis={"summary": "line\nbreak \\ and \t", "nested": {"z": 1, "a": [None, 2.5]}},
    )
    storage.upsert_decisions([row], atomic=True)
    got = storage.get_decision(row["id"])
    assert got["decision"] == awkward
    assert got["comment"] == "\\"
    assert got["tags"] == ["a\tb", "c\\d", 'quote"s']
    assert got["ai_analysis"] == {"summary": "line\nbreak \\ and \t", "nested": {"z": 1, "a": [None, 2.5]}}


def test_a_repeated_id_in_one_call_ends_with_its_last_version(storage):
    first = decision(1, updated_at="2025-01-01T00:00:00Z")
    again = {**first, "decision": "Second version", "updated_at": "2025-02-01T00:00:00Z"}
    assert storage.upsert_decisions([first, decision(2), again], atomic=True) == 3
    got = storage.get_decision(first["id"])
    assert got["decision"] == "Second version"
    assert got["updated_at"] == "2025-02-01T00:00:00.000000Z"
    assert storage.count_decisions() == 2


def test_links_to_rows_earlier_in_the_same_batch_are_accepted(storage):
    target = decision(1)
    linking = decision(2, superseded_by=target["id"])
    chain = decision(3, superseded_by=linking["id"])
    storage.upsert_decisions([target, linking, chain], atomic=True)
    assert storage.get_decision(chain["id"])["superseded_by"] == linking["id"]


def test_a_dangling_link_fails_the_whole_atomic_call(storage):
    from angles.errors import DatabaseError

    rows = [decision(n) for n in range(6000)]
    rows.append(decision(9999, superseded_by="00000000-0000-4000-8000-000000000000"))
    with pytest.raises(DatabaseError):
        storage.upsert_decisions(rows, atomic=True)
    assert storage.count_decisions() == 0


def test_rows_with_fewer_columns_take_the_defaults_and_keep_other_columns(storage):
    full = decision(1, comment="kept", priority="P1")
    storage.upsert_decisions([full])
    partial = {"id": full["id"], "decision": "New text", "type": "technical", "date": "2025-03-01"}
    fresh = {"id": decision(2)["id"], "decision": "Only required", "type": "other", "date": "2025-03-02"}
    storage.upsert_decisions([partial, fresh])
    got = storage.get_decision(full["id"])
    assert got["decision"] == "New text" and got["comment"] == "kept" and got["priority"] == "P1"
    new = storage.get_decision(fresh["id"])
    assert new["active"] is True and new["tags"] == [] and new["type_source"] == "person"
