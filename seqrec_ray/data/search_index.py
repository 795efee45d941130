"""Product search: a tantivy index over the catalogue's text and the log's queries.

Featurize writes ``OUTPUT/search/`` (``index/``, a tantivy index, and ``search.json``, what
it holds): one document per item that has a catalogue row or was reached from a query in
the log. A document holds the item's title, brand, category and attribute tokens, and the
queries that led shoppers to it (the query -> engagement graph, ``query_pairs``), each
repeated by how strongly they engaged (BM25's term frequency then counts the clicks). The
checkpoint copies the directory, so a served model searches the catalogue it was trained
with; ``POST /items`` updates a replica's private copy (``SearchIndex.upsert``).

Matching (``SearchIndex.search``): every query word scores with BM25 on each field, and
also matches words within a small edit distance (typos; fuzzy matches score a constant,
lower than an exact match) and, for the last word, words it starts (a query typed half-way).
Word order never matters. A query with no matching word gets no candidates at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray import schema as S
from seqrec_ray.data.events import SESSION_INDEX, user_starts
from seqrec_ray.models.query import normalize_query, query_hash, query_words

SEARCH_DIR = "search"
INDEX_DIR = "index"
SEARCH_MANIFEST = "search.json"
SEARCH_VERSION = 1
ITEM_FIELD = "item_id"
# Searched fields and their BM25 boosts: what a shopper types is most often in the title,
# and the queries that already led to an item are the next best evidence.
FIELD_BOOSTS = {"title": 2.0, "queries": 1.5, "brand": 1.5, "category": 1.0, "attributes": 1.0}
FUZZY_BOOST = 0.3  # a fuzzy match scores this constant per field (an exact one ~0.5-3 with BM25)
MIN_FUZZY_LENGTH = 4  # shorter words match exactly only ("red" must not find "bed")
LONG_WORD = 8  # from this length two edits are allowed
MAX_QUERY_TERMS = 16
# Engagements a query leads to, and how much each says about the item matching it.
ENGAGEMENT_WEIGHTS = {"click": 1.0, "fav": 2.0, "cart": 2.0, "purchase": 3.0}
MAX_QUERIES_PER_ITEM = 32
MAX_QUERY_REPEAT = 8  # a query's weight, capped, is how often it is repeated in the document
WRITER_HEAP_BYTES = 64 * 1024 * 1024
QUERY_TEXTS_FILE = "queries.parquet"
QUERY_TEXT_SCHEMA = pa.schema([("query_hash", pa.int64()), (S.QUERY, pa.string())])
QUERY_PAIRS_SCHEMA = pa.schema([(S.ITEM_ID, pa.string()), (S.QUERY, pa.string()), ("weight", pa.float64())])



def query_terms(text: str | None) -> list[str]:
    """The distinct words of a query (``models.query.query_words``: tantivy's default
    tokenizer, alphanumeric runs lower-cased), in order, at most MAX_QUERY_TERMS."""
    seen: dict[str, None] = {}
    for word in query_words(text):
        if len(word) <= 40:  # tantivy drops longer tokens
            seen.setdefault(word, None)
    return list(seen)[:MAX_QUERY_TERMS]


# ---------------------------------------------------------------- the query graph


def query_sources(events: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """For sessionized events (sorted by user and time, ``events.sessionize``): the row whose
    query led to each engagement (-1 = none) and the engagement's weight (0 = not an
    engagement), both (n,).

    An engagement (ENGAGEMENT_WEIGHTS) belongs to the query it carries itself (a log of
    clicks on search results, such as Best Buy's) or else to the latest search event with a
    query earlier in the same session."""
    n = events.num_rows
    positions = np.arange(n)
    first = user_starts(events)
    session = events[SESSION_INDEX].to_numpy()
    new_session = first.copy()
    new_session[1:] |= session[1:] != session[:-1]
    session_start = np.maximum.accumulate(np.where(new_session, positions, 0))
    has_query = pc.is_valid(events[S.QUERY]).to_numpy(zero_copy_only=False)
    types = events[S.EVENT_TYPE]
    searches = has_query & pc.equal(types, "search").to_numpy(zero_copy_only=False)
    last_search = np.maximum.accumulate(np.where(searches, positions, -1))
    source = np.where(has_query & ~searches, positions,
                      np.where(last_search >= session_start, last_search, -1))  # (n,) row whose query applies
    weight = np.zeros(n)
    for name, w in ENGAGEMENT_WEIGHTS.items():
        weight[pc.equal(types, name).to_numpy(zero_copy_only=False)] = w
    return np.where(weight > 0, source, -1), weight


def event_query_hashes(events: pa.Table) -> tuple[np.ndarray, pa.Table]:
    """Per event, the hash (``models.query.query_hash``) of the query that led to it, 0 for
    events no search led to: (n,) int64; and each distinct query once (QUERY_TEXT_SCHEMA).
    Each distinct raw query text is normalised and hashed once."""
    n = events.num_rows
    if n == 0 or events[S.QUERY].null_count == n:
        return np.zeros(n, dtype=np.int64), QUERY_TEXT_SCHEMA.empty_table()
    source, _ = query_sources(events)
    rows = np.flatnonzero(source >= 0)
    encoded = pc.dictionary_encode(events[S.QUERY].combine_chunks().take(pa.array(source[rows])))
    texts = [normalize_query(t) for t in encoded.dictionary.to_pylist()]
    hashes = np.array([query_hash(t) for t in texts] + [0], dtype=np.int64)
    codes = pc.fill_null(encoded.indices, len(texts)).to_numpy(zero_copy_only=False)
    out = np.zeros(n, dtype=np.int64)
    out[rows] = hashes[codes]
    distinct = {h: t for h, t in zip(hashes[:-1].tolist(), texts) if h}
    table = pa.table({"query_hash": pa.array(list(distinct), pa.int64()),
                      S.QUERY: pa.array(list(distinct.values()), pa.string())}, schema=QUERY_TEXT_SCHEMA)
    return out, table


def query_pairs(events: pa.Table, holdout_last: int = 0, before: float | None = None) -> pa.Table:
    """(item_id, query, weight) for every engagement a query led to (``query_sources``),
    from sessionized events. Only training events count: each user's last
    ``holdout_last`` events (leave-one-out's held-out targets) and, for a temporal split,
    events at or after ``before`` are left out, so evaluation never searches with the
    answers it is graded on.
    """
    n = events.num_rows
    if n == 0 or events[S.QUERY].null_count == n:
        return QUERY_PAIRS_SCHEMA.empty_table()
    positions = np.arange(n)
    first = user_starts(events)
    source, weight = query_sources(events)
    keep = source >= 0
    if holdout_last:  # leave-one-out holds out the last events of users with more than that many
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        user_end = np.append(starts[1:], n)[group]  # (n,) one past each user's last
        long_enough = (user_end - starts[group]) > holdout_last
        keep &= ~long_enough | (user_end - positions > holdout_last)
    if before is not None:
        keep &= events[S.TIMESTAMP].to_numpy() < before
    rows = np.flatnonzero(keep)
    queries = [normalize_query(q) for q in events[S.QUERY].take(pa.array(source[rows])).to_pylist()]
    table = pa.table({S.ITEM_ID: events[S.ITEM_ID].take(pa.array(rows)),
                      S.QUERY: pa.array(queries, pa.string()), "weight": pa.array(weight[rows])},
                     schema=QUERY_PAIRS_SCHEMA)
    return table.filter(pc.is_valid(table[S.QUERY]))


def combine_query_texts(parts: Iterable[pa.Table]) -> pa.Table:
    """Each distinct query once, over buckets, sorted by hash."""
    tables = [t for t in parts if t.num_rows]
    if not tables:
        return QUERY_TEXT_SCHEMA.empty_table()
    table = pa.concat_tables(tables).sort_by("query_hash")
    hashes = table["query_hash"].to_numpy()
    return table.filter(pa.array(np.r_[True, hashes[1:] != hashes[:-1]]))


def write_query_texts(queries: pa.Table, output: str) -> None:
    """OUTPUT/search/queries.parquet: every query of the log by its hash (the sequences'
    ``queries`` column), for the query-aware model's training data."""
    import pyarrow.parquet as pq

    os.makedirs(os.path.join(output, SEARCH_DIR), exist_ok=True)
    pq.write_table(queries, os.path.join(output, SEARCH_DIR, QUERY_TEXTS_FILE))


def load_query_texts(directory: str) -> pa.Table:
    """An artifacts directory's queries (QUERY_TEXT_SCHEMA); empty when it has none."""
    import pyarrow.parquet as pq

    path = os.path.join(directory, SEARCH_DIR, QUERY_TEXTS_FILE)
    return pq.read_table(path).cast(QUERY_TEXT_SCHEMA) if os.path.isfile(path) else QUERY_TEXT_SCHEMA.empty_table()


def combine_query_pairs(parts: Iterable[pa.Table]) -> pa.Table:
    """Sum the weight of each (item, query) over buckets; keep each item's strongest
    MAX_QUERIES_PER_ITEM queries."""
    tables = [t for t in parts if t.num_rows]
    if not tables:
        return QUERY_PAIRS_SCHEMA.empty_table()
    summed = pa.concat_tables(tables).group_by([S.ITEM_ID, S.QUERY]).aggregate([("weight", "sum")])
    summed = summed.rename_columns([S.ITEM_ID, S.QUERY, "weight"]).sort_by([(S.ITEM_ID, "ascending"),
                                                                           ("weight", "descending")])
    items = summed[S.ITEM_ID].to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
    rank = np.arange(len(items)) - np.repeat(starts, np.diff(np.r_[starts, len(items)]))
    return summed.filter(pa.array(rank < MAX_QUERIES_PER_ITEM)).select(QUERY_PAIRS_SCHEMA.names).cast(QUERY_PAIRS_SCHEMA)


# ---------------------------------------------------------------- documents


def item_document(row: Mapping[str, Any], queries: Sequence[tuple[str, float]] = ()) -> dict[str, Any]:
    """The searchable text of one item: a catalogue row (any of title, brand, category_id,
    attributes) and its (query, weight) pairs from the log."""
    doc: dict[str, Any] = {ITEM_FIELD: str(row[S.ITEM_ID])}
    for name, column in (("title", "title"), ("brand", "brand"), ("category", S.CATEGORY_ID)):
        if row.get(column):
            doc[name] = str(row[column])
    if row.get("attributes"):
        doc["attributes"] = " ".join(str(a) for a in row["attributes"])
    repeated = [q for q, w in queries for _ in range(max(1, min(MAX_QUERY_REPEAT, round(w))))]
    if repeated:
        doc["queries"] = repeated
    return doc


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field(ITEM_FIELD, stored=True, tokenizer_name="raw")
    for name in FIELD_BOOSTS:  # the log's queries are stored: an updated item keeps them
        builder.add_text_field(name, stored=name == "queries")
    return builder.build()


@dataclass(frozen=True)
class SearchSummary:
    documents: int
    with_catalogue_text: int
    with_queries: int
    query_pairs: int
    version: int = SEARCH_VERSION

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def write_search_index(catalogue: pa.Table | None, pairs: pa.Table, output: str) -> SearchSummary:
    """Build ``output/search/`` from the kept catalogue rows and the combined query pairs."""
    import tantivy

    directory = os.path.join(output, SEARCH_DIR)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(os.path.join(directory, INDEX_DIR))
    by_item: dict[str, list[tuple[str, float]]] = {}
    for item, query, weight in zip(*(pairs[c].to_pylist() for c in QUERY_PAIRS_SCHEMA.names)):
        by_item.setdefault(item, []).append((query, weight))
    rows = {} if catalogue is None else {str(r[S.ITEM_ID]): r for r in catalogue.to_pylist()}
    items = sorted(rows.keys() | by_item.keys())
    index = tantivy.Index(_schema(), path=os.path.join(directory, INDEX_DIR))
    writer = index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
    with_text = 0
    for item in items:
        doc = item_document(rows.get(item, {S.ITEM_ID: item}), by_item.get(item, ()))
        with_text += any(k in doc for k in ("title", "brand", "category", "attributes"))
        writer.add_document(tantivy.Document(**doc))
    writer.commit()
    writer.wait_merging_threads()
    summary = SearchSummary(documents=len(items), with_catalogue_text=with_text,
                            with_queries=len(by_item), query_pairs=pairs.num_rows)
    with open(os.path.join(directory, SEARCH_MANIFEST), "w", encoding="utf-8") as f:
        json.dump(summary.to_dict(), f, indent=2)
    return summary


def has_search_index(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, SEARCH_DIR, SEARCH_MANIFEST))


# ---------------------------------------------------------------- searching


@dataclass(frozen=True)
class Match:
    item_id: str
    relevance: float  # tantivy's score: BM25 over the fields plus fuzzy matches
    matched_terms: tuple[str, ...]  # the query's words this item matched (exactly or nearly)


class SearchIndex:
    """A writable private copy of an artifacts' or checkpoint's ``search/`` directory.

    Copied because live catalogue updates (``upsert``/``delete``) must never touch the
    checkpoint, and every serving replica holds its own copy (tantivy allows one writer).
    """

    def __init__(self, source_dir: str) -> None:
        import tantivy

        source = os.path.join(source_dir, SEARCH_DIR, INDEX_DIR)
        if not os.path.isdir(source):
            raise FileNotFoundError(f"{source_dir} has no {SEARCH_DIR}/{INDEX_DIR}/ (featurize writes it)")
        self._tmp = tempfile.TemporaryDirectory(prefix="seqrec-search-")  # removed with this object
        shutil.copytree(source, self._tmp.name, dirs_exist_ok=True)
        self._index = tantivy.Index.open(self._tmp.name)
        self._schema = self._index.schema
        self._writer = None

    def close(self) -> None:
        self._writer = None
        self._tmp.cleanup()

    @property
    def documents(self) -> int:
        return self._index.searcher().num_docs

    def upsert(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add or replace items from catalogue rows (their log queries are kept)."""
        import tantivy

        writer = self._writable()
        searcher = self._index.searcher()
        for row in rows:
            item = str(row[S.ITEM_ID])
            old = self._stored_queries(searcher, item)
            writer.delete_documents_by_term(ITEM_FIELD, item)
            writer.add_document(tantivy.Document(**item_document(row, old)))
        self._commit()

    def delete(self, item_ids: Sequence[str]) -> None:
        writer = self._writable()
        for item in item_ids:
            writer.delete_documents_by_term(ITEM_FIELD, str(item))
        self._commit()

    def search(self, text: str, limit: int, within: Sequence[str] | None = None) -> list[Match]:
        """The best ``limit`` items for a query, best first; [] when no word matches.
        ``within``: only these item ids (re-ranking a given list)."""
        import tantivy

        terms = query_terms(text)
        if not terms or limit < 1:
            return []
        searcher = self._index.searcher()
        per_term = [self._term_query(t, last=i == len(terms) - 1) for i, t in enumerate(terms)]
        query = tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in per_term])
        if within is not None:
            query = self._restricted(query, within)
        hits = searcher.search(query, limit).hits
        ids = [searcher.doc(address)[ITEM_FIELD][0] for _, address in hits]
        matched = self._matched_terms(searcher, terms, per_term, ids)
        return [Match(item, float(score), tuple(t for t in terms if item in matched[t]))
                for (score, _), item in zip(hits, ids)]

    # ------------------------------------------------------------ internals

    def _term_query(self, term: str, last: bool):
        import tantivy

        Q, should = tantivy.Query, tantivy.Occur.Should
        clauses = []
        distance = 0 if len(term) < MIN_FUZZY_LENGTH else (2 if len(term) >= LONG_WORD else 1)
        for field, boost in FIELD_BOOSTS.items():
            clauses.append((should, Q.boost_query(Q.term_query(self._schema, field, term), boost)))
            if distance or last:
                fuzzy = Q.fuzzy_term_query(self._schema, field, term, distance=distance,
                                           transposition_cost_one=True, prefix=last)
                clauses.append((should, Q.boost_query(fuzzy, FUZZY_BOOST)))
        return Q.boolean_query(clauses)

    def _restricted(self, query, item_ids: Sequence[str]):
        import tantivy

        allowed = tantivy.Query.term_set_query(self._schema, ITEM_FIELD, [str(i) for i in item_ids])
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, allowed)])

    def _matched_terms(self, searcher, terms: list[str], per_term: list, ids: list[str]) -> dict[str, set[str]]:
        """Which of ``ids`` each term matched: the same term queries, restricted to them."""
        if not ids:
            return {t: set() for t in terms}
        out = {}
        for term, query in zip(terms, per_term):
            hits = searcher.search(self._restricted(query, ids), len(ids)).hits
            out[term] = {searcher.doc(address)[ITEM_FIELD][0] for _, address in hits}
        return out

    def _stored_queries(self, searcher, item: str) -> list[tuple[str, float]]:
        """The log queries of an indexed item, each repetition once (weights survive)."""
        import tantivy

        hits = searcher.search(tantivy.Query.term_query(self._schema, ITEM_FIELD, item), 1).hits
        if not hits:
            return []
        return [(q, 1.0) for q in searcher.doc(hits[0][1]).to_dict().get("queries", [])]

    def _writable(self):
        if self._writer is None:
            self._writer = self._index.writer(heap_size=WRITER_HEAP_BYTES // 4, num_threads=1)
        return self._writer

    def _commit(self) -> None:
        self._writer.commit()
        self._index.reload()

