"""The search index: the query -> engagement graph, tantivy retrieval (typos, word order,
partial words, no match), live updates, and featurize writing it into the artifacts."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from seqrec_ray.data.artifacts import load_sequences
from seqrec_ray.data.events import ORDER, order_keys, sessionize, sort_events
from seqrec_ray.data.pipeline import featurize_in_process
from seqrec_ray.data.search_index import (
    SearchIndex,
    combine_query_pairs,
    load_query_texts,
    normalize_query,
    query_pairs,
    query_terms,
    write_search_index,
)
from seqrec_ray.models.query import query_hash
from seqrec_ray.schema import EVENT_SCHEMA
from seqrec_ray.store.base import StoredEvent

CATALOGUE = [
    {"item_id": "boot-1", "title": "Red leather boots", "brand": "Acme", "category_id": "shoes", "attributes": ["winter"]},
    {"item_id": "boot-2", "title": "Blue canvas sneakers", "brand": "Zoom", "category_id": "shoes"},
    {"item_id": "hat-1", "title": "Red wool hat", "brand": "Acme", "category_id": "hats"},
    {"item_id": "game-1", "title": "Gears of War 3", "brand": "Microsoft", "category_id": "games"},
]


def _event(user, item, kind, t, session=None, query=None):
    return StoredEvent(user_id=user, item_id=item, event_type=kind, timestamp=1.7e9 + t, session_id=session, query=query)


def _sessionized(events: list[StoredEvent]) -> pa.Table:
    table = pa.Table.from_pylist([e.as_dict() for e in events], schema=EVENT_SCHEMA)
    table = table.append_column(ORDER, order_keys(0, 0, table.num_rows))
    return sessionize(sort_events(table), gap_seconds=1800)


def test_engagements_belong_to_the_query_they_carry_or_to_the_sessions_latest_search():
    events = _sessionized([
        _event("u", "hat-1", "search", 0, "s1", "Red  HATS"),
        _event("u", "hat-1", "view", 1, "s1"),  # a view is no engagement
        _event("u", "hat-1", "click", 2, "s1"),
        _event("u", "boot-1", "search", 3, "s1", "boots"),
        _event("u", "boot-1", "purchase", 4, "s1"),
        _event("u", "boot-2", "click", 5, "s2"),  # another session: no query applies
        _event("u", "game-1", "click", 6, "s2", "gears"),  # a click that carries its own query
        _event("u", "hat-1", "cart", 7, "s2"),  # after it, "gears" is no search: nothing
    ])
    pairs = query_pairs(events).to_pylist()
    assert pairs == [{"item_id": "hat-1", "query": "red hats", "weight": 1.0},
                     {"item_id": "boot-1", "query": "boots", "weight": 3.0},
                     {"item_id": "game-1", "query": "gears", "weight": 1.0}]
    # Leave-one-out's held-out last two events never reach the index.
    assert [p["item_id"] for p in query_pairs(events, holdout_last=2).to_pylist()] == ["hat-1", "boot-1"]
    assert [p["item_id"] for p in query_pairs(events, before=1.7e9 + 4).to_pylist()] == ["hat-1"]
    combined = combine_query_pairs([query_pairs(events), query_pairs(events)]).to_pylist()
    assert {(p["item_id"], p["query"], p["weight"]) for p in combined} == {
        ("hat-1", "red hats", 2.0), ("boot-1", "boots", 6.0), ("game-1", "gears", 2.0)}


def test_query_words_are_alphanumeric_runs_lower_cased():
    assert query_terms("Gears-of-WAR 3, gears!") == ["gears", "of", "war", "3"]
    assert normalize_query("  Forza   4 ") == "forza 4" and normalize_query("!!") is None


@pytest.fixture()
def index(tmp_path):
    pairs = pa.table({"item_id": ["game-1", "boot-2"], "query": ["xbox shooter", "trainers"], "weight": [5.0, 1.0]})
    summary = write_search_index(pa.Table.from_pylist(CATALOGUE), combine_query_pairs([pairs]), str(tmp_path))
    assert summary.documents == 4 and summary.with_queries == 2 and summary.with_catalogue_text == 4
    opened = SearchIndex(str(tmp_path))
    yield opened
    opened.close()


def test_search_finds_products_by_title_brand_category_and_past_queries(index):
    assert [m.item_id for m in index.search("red", 10)][:2] == ["hat-1", "boot-1"] or \
        {m.item_id for m in index.search("red", 10)} == {"hat-1", "boot-1"}
    best = index.search("red boots", 10)
    assert best[0].item_id == "boot-1" and best[0].matched_terms == ("red", "boots")
    assert {m.item_id for m in best} == {"boot-1", "hat-1"}  # hat-1 matched "red" only
    assert index.search("boots red", 10)[0].item_id == "boot-1"  # word order does not matter
    assert index.search("acme", 10)[0].item_id in {"boot-1", "hat-1"}  # brand
    assert index.search("xbox", 10)[0].item_id == "game-1"  # only a past query says so
    assert [m.item_id for m in index.search("trainers", 10)] == ["boot-2"]


def test_typos_and_half_typed_words_still_find_the_product(index):
    assert index.search("geers of wra", 10)[0].item_id == "game-1"  # one edit each
    assert index.search("sneakres", 10)[0].item_id == "boot-2"  # a transposition
    assert index.search("red lea", 10)[0].item_id == "boot-1"  # the last word half-typed
    typo = index.search("sneakres", 10)[0]
    assert typo.matched_terms == ("sneakres",) and typo.relevance < index.search("sneakers", 10)[0].relevance


def test_a_query_that_matches_nothing_gets_no_candidates(index):
    assert index.search("zzzz qqqq", 10) == []
    assert index.search("   ", 10) == [] and index.search("!!!", 10) == []
    assert index.search("bed", 10) == []  # short words match exactly only: no "red"


def test_live_items_are_searchable_at_once_and_deleted_ones_are_gone(index):
    index.upsert([{"item_id": "hat-9", "title": "Green bucket hat", "category_id": "hats"}])
    assert index.search("bucket", 10)[0].item_id == "hat-9" and index.documents == 5
    index.upsert([{"item_id": "game-1", "title": "Gears of War 3 Game of the Year"}])  # an update
    assert index.documents == 5 and index.search("year", 10)[0].item_id == "game-1"
    assert index.search("xbox", 10)[0].item_id == "game-1"  # the log's queries survive the update
    index.delete(["game-1"])
    assert index.search("gears", 10) == [] and index.documents == 4
    assert [m.item_id for m in index.search("red", 10, within=["hat-1"])] == ["hat-1"]


def test_featurize_writes_the_search_index_into_the_artifacts(tmp_path):
    events = []
    for u in range(6):
        events += [_event(f"u{u}", "game-1", "search", 10 * u, f"s{u}", "gears war"),
                   _event(f"u{u}", "game-1", "click", 10 * u + 1, f"s{u}"),
                   _event(f"u{u}", "hat-1", "view", 10 * u + 2, f"s{u}"),
                   _event(f"u{u}", "boot-1", "view", 10 * u + 3, f"s{u}"),
                   _event(f"u{u}", "boot-2", "view", 10 * u + 4, f"s{u}")]
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in CATALOGUE))
    manifest = featurize_in_process(events, str(tmp_path / "a"), items=str(items), num_buckets=2)
    assert manifest["search"] == {"documents": 4, "with_catalogue_text": 4, "with_queries": 1, "query_pairs": 1,
                                  "version": 1, "queries": 1}
    # Each event a search led to carries the query's hash in the sequences: the click after
    # "gears war" (the views are no engagements); the query's text is kept by its hash.
    sequences = load_sequences(str(tmp_path / "a"))
    gears = query_hash("Gears  WAR")
    assert all(q == [0, gears, 0, 0, 0] for q in sequences["queries"].to_pylist())
    assert load_query_texts(str(tmp_path / "a")).to_pylist() == [{"query_hash": gears, "query": "gears war"}]
    index = SearchIndex(str(tmp_path / "a"))
    try:
        assert index.search("gears", 5)[0].item_id == "game-1"
    finally:
        index.close()
    plain = featurize_in_process(events[:3], str(tmp_path / "b"), num_buckets=1)
    assert plain["search"] is None  # no catalogue, and the one click is held out: no index
    with pytest.raises(FileNotFoundError, match="has no search/index/"):
        SearchIndex(str(tmp_path / "b"))
