"""The searchable vault on every backend: search, duplicates, history, supersede and links behave the same."""

from __future__ import annotations

import pytest

from angles.engines import vault
from angles.engines.decision_model import validate
from angles.errors import NotFoundError, ValidationError
from tests.test_storage_behaviour import BACKENDS, open_backend

HOSTILE = [
    '"unclosed quote',
    "OR",
    "-",
    "*",
    "postgres*",
    ":",
    "type:technical",
    "NEAR(",
    'NEAR("a" "b", 2)',
    "a\x00b",
    "x" * 10_000,
    "🚀🔥",
    "🚀 database",
    "'; DROP TABLE decision_vault; --",
    "AND OR NOT",
    "^start",
    "(((",
    "\\",
    "'",
    "-database",
    "word " * 40,
]


@pytest.fixture(params=BACKENDS)
def storage(request):
    return open_backend(request.param, request)


def add(storage, text, **fields):
    return vault.record(storage, {"text": text, **fields}, source="cli")


def test_search_finds_words_in_any_form_case_and_accent(storage):
    first = add(storage, "We deploy every service with Kubernetes.", type="technical", tags="infra,ops")
    add(storage, "Hiring freeze for the marketing team", type="strategy")
    add(storage, "Le café est servi à midi", comment="kitchen rules")
    hits = vault.search(storage, "deployed services")
    assert [h["id"] for h in hits] == [first["id"]]
    assert "[deploy]" in hits[0]["snippet"] and "[service]" in hits[0]["snippet"]
    assert {"id", "text", "type", "priority", "date", "active", "superseded_by", "score", "snippet"} <= set(hits[0])
    assert [h["text"] for h in vault.search(storage, "CAFE")] == ["Le café est servi à midi"]
    assert len(vault.search(storage, "kitchen")) == 1  # the comment is searched
    assert len(vault.search(storage, "ops")) == 1  # and the tags


def test_search_phrases_exclusions_and_or(storage):
    a = add(storage, "Use the main database for reporting")["id"]
    b = add(storage, "The database main replica is read only")["id"]
    c = add(storage, "Reporting moves to the warehouse")["id"]
    assert {h["id"] for h in vault.search(storage, "main database")} == {a, b}
    assert [h["id"] for h in vault.search(storage, '"main database"')] == [a]
    assert {h["id"] for h in vault.search(storage, "database -replica")} == {a}
    assert {h["id"] for h in vault.search(storage, "replica OR warehouse")} == {b, c}
    # AND binds tighter than OR, as in PostgreSQL's websearch: (reporting AND warehouse) OR replica.
    assert {h["id"] for h in vault.search(storage, "reporting warehouse OR replica")} == {b, c}
    assert {h["id"] for h in vault.search(storage, "database -replica OR warehouse")} == {a, c}
    with pytest.raises(ValidationError, match="only excludes"):
        vault.search(storage, "database OR -replica")


def test_search_ranks_better_matches_first_and_newer_first_on_ties(storage):
    weak = add(storage, "Budget review covers many topics, one of them security", date="2025-01-01")["id"]
    strong = add(storage, "Security review: security keys for every security admin", date="2024-01-01")["id"]
    old_twin = add(storage, "Rotate passwords yearly", date="2023-05-01")["id"]
    new_twin = add(storage, "Rotate passwords quarterly", date="2025-05-01")["id"]
    assert [h["id"] for h in vault.search(storage, "security")][:2] == [strong, weak]
    assert [h["id"] for h in vault.search(storage, "rotate passwords")] == [new_twin, old_twin]


def test_search_filters_by_type_priority_tag_and_dates(storage):
    a = add(storage, "Cache results in Redis", type="technical", priority="P1", tags="perf", date="2025-02-01")["id"]
    add(storage, "Cache invalidation owned by platform", type="process", priority="P2", date="2025-06-01")
    assert [h["id"] for h in vault.search(storage, "cache", type="technical")] == [a]
    assert [h["id"] for h in vault.search(storage, "cache", priority="P1")] == [a]
    assert [h["id"] for h in vault.search(storage, "cache", tag="perf")] == [a]
    assert [h["id"] for h in vault.search(storage, "cache", until="2025-03-01")] == [a]
    assert len(vault.search(storage, "cache", since="2025-03-01")) == 1
    assert len(vault.search(storage, "cache", limit=1)) == 1


def test_superseded_and_inactive_decisions_are_left_out_unless_asked(storage):
    old = add(storage, "Ship releases on Fridays")["id"]
    gone = add(storage, "Releases need two approvals", comment="x")["id"]
    vault.edit(storage, gone, {"active": False}, source="cli")
    new = vault.supersede(storage, old, new_fields={"text": "Ship releases on Tuesdays"}, source="cli")["new_id"]
    assert [h["id"] for h in vault.search(storage, "releases")] == [new]
    everything = {h["id"]: h for h in vault.search(storage, "releases", include_inactive=True)}
    assert set(everything) == {old, gone, new}
    assert everything[old]["superseded_by"] == new and everything[old]["active"] is False
    assert everything[gone]["active"] is False


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_give_results_or_one_clear_line_and_change_nothing(storage, query):
    add(storage, "The database stays on PostgreSQL", tags="db")
    before = list(storage.iter_decisions())
    try:
        hits = vault.search(storage, query, include_inactive=True)
    except ValidationError as exc:
        assert "\n" not in str(exc) and "fts5" not in str(exc).lower() and "syntax" not in str(exc).lower()
    else:
        assert isinstance(hits, list)
    assert list(storage.iter_decisions()) == before


def test_exact_duplicates_are_not_recorded_twice(storage):
    first = add(storage, "Adopt  trunk-based development.")
    again = add(storage, "adopt trunk-based   DEVELOPMENT!")
    assert first["status"] == "created" and again["status"] == "already_recorded"
    assert again["id"] == first["id"] and storage.count_decisions() == 1
    # Only live decisions count: once superseded, the same words may be recorded again.
    vault.supersede(storage, first["id"], new_fields={"text": "Adopt release branches"}, source="cli")
    assert add(storage, "Adopt trunk-based development")["status"] == "created"


def test_near_duplicates_are_recorded_and_the_closest_named(storage):
    a = add(storage, "Use PostgreSQL for the billing service")["id"]
    add(storage, "Marketing budget doubles next year")
    result = add(storage, "Use PostgreSQL for the billing and invoicing services")
    assert result["status"] == "created"
    assert [s["id"] for s in result["similar"]] == [a]
    assert 0 < result["similar"][0]["score"] < 1
    closest = vault.similar(storage, result["id"][:8])
    assert closest[0]["id"] == a and result["id"] not in {s["id"] for s in closest}
    assert vault.similar(storage, "billing on postgresql")[0]["id"] in {a, result["id"]}


def test_edit_keeps_every_earlier_version_with_its_source(storage):
    row = add(storage, "Code review within 24 hours", type="process", tags="team")
    vault.edit(storage, row["id"], {"text": "Code review within one working day", "priority": "P1"}, source="cli")
    vault.edit(storage, row["id"], {"tags": ["team", "speed"]}, source="agent:claude")
    unchanged = vault.edit(storage, row["id"], {"type": "process"}, source="cli")
    assert unchanged["changed"] == []
    versions = vault.history(storage, row["id"])
    assert [v["source"] for v in versions] == ["cli", "agent:claude"]
    assert versions[0]["fields"]["decision"] == "Code review within 24 hours"
    assert versions[0]["changed"] == {
        "decision": {"from": "Code review within 24 hours", "to": "Code review within one working day"},
        "priority": {"from": None, "to": "P1"},
    }
    assert versions[1]["changed"] == {"tags": {"from": ["team"], "to": ["team", "speed"]}}
    assert storage.get_decision(row["id"])["priority_source"] == "person"
    assert vault.search(storage, "working day")[0]["id"] == row["id"]
    assert vault.search(storage, "hours", include_inactive=True) == []


def test_every_writer_of_content_leaves_history(storage):
    row = add(storage, "Weekly demo on Thursday")
    stored = storage.get_decision(row["id"])
    storage.upsert_decisions([{**stored, "decision": "Weekly demo on Friday"}], source="notion")
    storage.update_decision(row["id"], {"type": "process", "type_source": "ai"}, source="ai")
    storage.update_decision(row["id"], {"notion_page_id": "p-1"}, source="notion")  # bookkeeping: no version
    storage.upsert_decisions([storage.get_decision(row["id"])], source="restore")  # identical: no version
    assert [(h["source"], h["changed"]) for h in storage.history_of(row["id"])] == [
        ("notion", ["decision"]),
        ("ai", ["type"]),
    ]


def test_supersede_chains_refuses_repeats_and_cycles(storage):
    a = add(storage, "Deploy with Ansible")["id"]
    b = add(storage, "Deploy with Terraform")["id"]
    step = vault.supersede(storage, a, new_id=b, reason="state tracking", source="cli")
    assert step["old_id"] == a and step["new_id"] == b and step["status"] == "existing"
    old = storage.get_decision(a)
    assert old["active"] is False and old["superseded_by"] == b and old["decision"] == "Deploy with Ansible"
    c = vault.supersede(storage, b, new_fields={"text": "Deploy with Pulumi"}, source="cli")["new_id"]
    with pytest.raises(ValidationError, match="already superseded"):
        vault.supersede(storage, a, new_id=c, source="cli")
    with pytest.raises(ValidationError, match="cycle"):
        vault.supersede(storage, c, new_id=a, source="cli")
    with pytest.raises(ValidationError, match="itself"):
        vault.supersede(storage, c, new_id=c, source="cli")
    described = vault.describe(storage, b[:8])
    assert described["chain"] == [a, b, c]
    assert described["reasons"] == {a: "state tracking", b: None}
    assert vault.describe(storage, a)["reason"] == "state tracking"
    assert vault.describe(storage, c)["supersedes"] == [b]
    assert [v["source"] for v in vault.history(storage, a)] == ["cli"]


def test_record_can_supersede_in_the_same_step(storage):
    old = add(storage, "Standups at 9:30")["id"]
    new = vault.record(storage, {"text": "Standups at 10:00"}, source="agent:cursor", supersedes=old[:8])
    assert new["supersedes"] == old and storage.get_decision(old)["superseded_by"] == new["id"]


def test_links_show_both_ways_and_can_be_removed(storage):
    a = add(storage, "Adopt event sourcing")["id"]
    b = add(storage, "Adopt Kafka")["id"]
    made = vault.link(storage, a, b, "depends_on", source="cli")
    assert made["status"] == "created"
    assert vault.link(storage, a, b, "depends_on", source="cli")["status"] == "already_linked"
    vault.link(storage, b, a, "relates_to", source="cli")
    out = vault.describe(storage, a)["links"]
    assert {(x["kind"], x["direction"], x["other_id"]) for x in out} == {
        ("depends_on", "out", b),
        ("relates_to", "in", b),
    }
    assert vault.describe(storage, b)["links"][0]["other_text"] in ("Adopt event sourcing",)
    with pytest.raises(ValidationError, match="kind"):
        vault.link(storage, a, b, "blocks", source="cli")
    with pytest.raises(ValidationError, match="itself"):
        vault.link(storage, a, a, "refines", source="cli")
    assert vault.unlink(storage, a, b, "relates_to") == 0
    assert vault.unlink(storage, a, b) == 1
    assert len(vault.describe(storage, a)["links"]) == 1
    assert sorted(r["kind"] for r in storage.iter_links()) == ["relates_to"]


def test_ids_resolve_from_a_unique_prefix_of_eight_characters(storage):
    rows = [
        {"text": f"Decision {n}", "id": f"{prefix}-1111-4111-8111-11111111111{n}"}
        for n, prefix in enumerate(("abcdef01", "abcdef02", "abcdef02"))
    ]
    for row in rows[:2]:
        storage.upsert_decisions([validate({"decision": row["text"], "id": row["id"]})])
    storage.upsert_decisions([validate({"decision": "Decision 2", "id": "abcdef02-2222-4111-8111-111111111112"})])
    assert vault.resolve(storage, "ABCDEF01") == rows[0]["id"]
    assert vault.resolve(storage, rows[0]["id"]) == rows[0]["id"]
    with pytest.raises(ValidationError, match="several"):
        vault.resolve(storage, "abcdef02")
    assert vault.resolve(storage, "abcdef02-2222") == "abcdef02-2222-4111-8111-111111111112"
    with pytest.raises(ValidationError, match="too short"):
        vault.resolve(storage, "abcd")
    with pytest.raises(NotFoundError):
        vault.resolve(storage, "99999999")
    with pytest.raises(ValidationError):
        vault.resolve(storage, "'; select")
    with pytest.raises(NotFoundError):
        vault.resolve(storage, "00000000-0000-4000-8000-000000000000")


def test_bad_input_is_refused_with_one_sentence(storage):
    a = add(storage, "Something")["id"]
    for call in (
        lambda: vault.record(storage, {"text": ""}, source="cli"),
        lambda: vault.record(storage, {"text": "x" * 20_001}, source="cli"),
        lambda: vault.record(storage, {"text": "ok", "type": "nonsense"}, source="cli"),
        lambda: vault.record(storage, {"text": "ok", "active": False}, source="cli"),
        lambda: vault.record(storage, {"text": "ok"}, source="somebody"),
        lambda: vault.edit(storage, a, {}, source="cli"),
        lambda: vault.search(storage, "x", limit=0),
        lambda: vault.search(storage, "x", since="yesterday"),
        lambda: vault.supersede(storage, a, source="cli"),
    ):
        with pytest.raises(ValidationError) as caught:
            call()
        assert "\n" not in str(caught.value)
    assert storage.count_decisions() == 1
    assert storage.history_of(a) == []


def test_history_and_links_round_trip_for_export_and_restore(storage):
    a = add(storage, "Keep backups for 90 days")["id"]
    b = add(storage, "Encrypt backups")["id"]
    vault.edit(storage, a, {"text": "Keep backups for one year"}, source="cli")
    vault.link(storage, b, a, "refines", source="cli")
    history = list(storage.iter_history())
    links = list(storage.iter_links())
    assert len(history) == 1 and len(links) == 1
    assert storage.upsert_history(history) == 0 and storage.upsert_links(links) == 0
    storage.delete_decisions([b])
    assert list(storage.iter_links()) == []


def test_duplicates_are_found_whatever_the_word_counts_say(storage):
    for n in range(30):
        add(storage, f"Common words about the platform team, number {n}")
    storage.refresh_search_statistics()
    fresh = add(storage, "Zanzibar quokka protocol replaces the platform team rota")
    # The counts are older than the words: the check must still find the same text.
    assert add(storage, "zanzibar QUOKKA protocol replaces the platform team rota!")["id"] == fresh["id"]
    storage.refresh_search_statistics()
    again = add(storage, "Zanzibar quokka protocol replaces the platform team rota")
    assert again["status"] == "already_recorded" and again["id"] == fresh["id"]
    near = add(storage, "The quokka protocol for the platform team")
    assert near["status"] == "created" and fresh["id"] in [s["id"] for s in near["similar"]]


def test_similar_decisions_are_found_through_their_rare_words(storage):
    for n in range(40):
        add(storage, f"Quarterly budget review for the finance team, item {n}")
    target = add(storage, "Budget review moves to the zeppelin hangar")["id"]
    storage.refresh_search_statistics()
    # Words most decisions hold are left out of the lookup; the rare ones still find the decision.
    assert vault.similar(storage, "zeppelin hangar budget review")[0]["id"] == target
    # A text of common words only is looked up by its rarest word, so it still finds similar decisions.
    assert vault.similar(storage, "finance team budget review")


@pytest.fixture(params=["pairs", "words"])
def phrase_lookup(request, monkeypatch):
    """PostgreSQL finds a phrase through its word-pair index, or (a phrase with a stop word inside) through the
    index of its words and a bounded check of their positions: each test below runs both ways."""
    from angles.storage import postgres

    if request.param == "words":
        if request.getfixturevalue("storage").kind != "postgres":
            pytest.skip("only PostgreSQL has two ways of finding a phrase")
        monkeypatch.setattr(postgres.PostgresStorage, "_phrase_pairs", staticmethod(lambda conn, query: None))
    monkeypatch.setattr(postgres, "PHRASE_CHECKS", 3)
    return request.param


def test_a_phrase_search_never_returns_decisions_holding_the_words_apart(storage, phrase_lookup):
    # PostgreSQL checks a phrase in a bounded number of decisions holding its words (here all 3 of them): the
    # looser lookup by words must never let a decision without the phrase through.
    phrase = add(storage, "Use the main database for reporting")["id"]
    apart = [add(storage, f"The database main replica number {n} is read only")["id"] for n in range(2)]
    assert [h["id"] for h in vault.search(storage, '"main database"')] == [phrase]
    assert vault.search(storage, '"main database" -reporting') == []
    assert {h["id"] for h in vault.search(storage, '"main database" OR replica')} == {phrase, *apart}
    assert {h["id"] for h in vault.search(storage, 'database -"main database"')} == set(apart)


def test_a_phrase_is_found_past_the_bound_of_decisions_checked_for_it(storage, phrase_lookup):
    # More decisions hold the words than PostgreSQL checks for the phrase, and the one holding the phrase was
    # stored last: the search still finds it (and every other match, up to the limit).
    apart = [add(storage, f"The database main replica number {n} is read only")["id"] for n in range(6)]
    phrases = [add(storage, f"Use the main database for reporting, team {n}")["id"] for n in range(2)]
    assert {h["id"] for h in vault.search(storage, '"main database"')} == set(phrases)
    assert len(vault.search(storage, '"main database"', limit=1)) == 1
    assert {h["id"] for h in vault.search(storage, '"database main"')} == set(apart)


def test_a_long_memo_shows_its_opening_when_the_match_lies_far_into_it(storage):
    memo = "Opening: zebras get the north paddock. " + "More background on fencing and water. " * 150
    add(storage, memo + "Finally the aardvark stays indoors.")
    assert "[zebras]" in vault.search(storage, "zebras")[0]["snippet"]
    far = vault.search(storage, "aardvark")
    assert len(far) == 1  # found, whatever its snippet
    if storage.kind != "supabase":
        # Snippets are cut from the first 4,000 characters: past them, the hit shows the start of its text.
        assert far[0]["snippet"].startswith("Opening: zebras get the north paddock.")


@pytest.mark.postgres
def test_the_word_pair_index_finds_exactly_what_the_phrase_operator_matches(request, monkeypatch):
    """Phrases found through the pair index against PostgreSQL's own phrase match of every row, on texts built
    to trip it: hyphenated and repeated words, stop words inside phrases, accents, digits, words too long to
    pair, punctuation, and tags and comments that continue the text."""
    import random

    from angles.engines.search_query import parse, to_websearch
    from angles.storage import postgres

    storage = open_backend("postgres", request)
    rng = random.Random(7)
    vocabulary = ["alpha", "beta", "gamma", "delta", "café", "deploying", "deployed", "x" * 300, "v2", "the", "of"]
    rows = []
    for n in range(150):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 12))]
        glue = [rng.choice([" ", " ", ", ", "-", ". ", " the "]) for _ in words]
        text = "".join(w + g for w, g in zip(words, glue, strict=True)).strip(" -,.") or "alpha"
        tags = [rng.choice(vocabulary[:6]) for _ in range(rng.randint(0, 2))]
        rows.append(validate({"decision": f"{text} {n}", "tags": tags, "comment": rng.choice([None, "beta gamma"])}))
    storage.upsert_decisions(rows)
    used = []
    real = postgres.PostgresStorage._phrase_pairs

    def counting(conn, query):
        found = real(conn, query)
        used.append(found is not None)
        return found

    monkeypatch.setattr(postgres.PostgresStorage, "_phrase_pairs", staticmethod(counting))
    queries = []
    for _ in range(60):
        phrase = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 3)))
        queries.append(rng.choice(['"{}"', '"{}" alpha', '"{}" OR "gamma delta"', '"{}" -beta']).format(phrase))
    for text in queries:
        query = parse(text)
        expected = {
            str(r["id"])
            for r in storage.conn.execute(
                "SELECT id FROM decision_vault WHERE search_vector @@ websearch_to_tsquery('angles_search', %s)",
                (to_websearch(query),),
            ).fetchall()
        }
        got = {h["id"] for h in vault.search(storage, text, include_inactive=True, limit=200)}
        assert got == expected, text
    assert sum(used) >= 30  # most of them went through the pairs
