"""The item catalogue: what a shop knows about its products besides their events.

A catalogue row is ``item_id`` plus any of ``title``, ``category_id``, ``brand``, ``price``
and ``attributes`` (a list of tokens). Featurize reads one (``--items FILE``, readers in
``catalogue_readers.py``), quarantines the rows it cannot use with a reason, and writes
``OUTPUT/catalogue/`` beside the vocabulary: ``items.parquet`` (one row per item, with its
vocabulary ``index``) and ``rejects.parquet``.

The models see content as token ids: ``item_tokens`` turns rows into a fixed-width
``(N, max_tokens)`` matrix of hashed tokens, one per category, brand, price bucket,
attribute and title word, so a token never seen before needs no vocabulary change. The
same function tokenises the training catalogue and an item posted to a running service.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqrec_ray import schema as S

CATALOGUE_DIR = "catalogue"
CATALOGUE_ITEMS_FILE = "items.parquet"
CATALOGUE_REJECTS_FILE = "rejects.parquet"
INDEX = "index"

CATALOGUE_SCHEMA = pa.schema([
    (S.ITEM_ID, pa.string()), ("title", pa.string()), (S.CATEGORY_ID, pa.string()),
    ("brand", pa.string()), (S.PRICE, pa.float64()), ("attributes", pa.list_(pa.string())),
])
CONTENT_COLUMNS = tuple(f.name for f in CATALOGUE_SCHEMA if f.name != S.ITEM_ID)
# What a reader hands over: the catalogue columns (any may be null) plus, per row, the
# reader's own verdict (null = parsed) and the row's original text for the rejects.
READ_ERROR = "_error"
RAW_ROW = "_raw"
READ_SCHEMA = CATALOGUE_SCHEMA.append(pa.field(READ_ERROR, pa.string())).append(pa.field(RAW_ROW, pa.string()))
REJECTS_SCHEMA = pa.schema([("row", pa.int64()), ("raw", pa.string()), ("reason", pa.string())])
STORED_SCHEMA = CATALOGUE_SCHEMA.append(pa.field(INDEX, pa.int64()))

# Reasons a catalogue row is quarantined (a reader may name its own, e.g. malformed_row).
MALFORMED_ROW = "malformed_row"
DUPLICATE_ITEM_ID = "duplicate_item_id"
BAD_PRICE = "bad_price"
TOO_MANY_ATTRIBUTES = "too_many_attributes"
MAX_ATTRIBUTES = 1000
MAX_TEXT_LENGTH = 2000

# Content fields a model can switch on, with the token prefix that keeps their values
# apart in the hashed table ("red" the colour word and "red" the brand differ).
CONTENT_FIELDS = ("category", "brand", "price", "attributes", "title")
_PREFIX = {"category": "c:", "brand": "b:", "price": "p:", "attributes": "a:", "title": "t:"}
_WORD = re.compile(r"\w+", re.UNICODE)


class CatalogueError(ValueError):
    """A catalogue file or row set that cannot be used at all (e.g. no valid row)."""


# ---------------------------------------------------------------- validation


def _reason_column(table: pa.Table) -> np.ndarray:
    """Per row: None when the row is good, else the first reason it fails."""
    n = table.num_rows
    reasons = np.array(table[READ_ERROR].to_pylist() if READ_ERROR in table.column_names
                       else [None] * n, dtype=object)
    item = table[S.ITEM_ID]
    checks = [
        (S.MISSING_ITEM_ID, pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(item)), 0), True)),
        (S.ID_TOO_LONG, pc.or_(pc.fill_null(pc.greater(pc.utf8_length(item), S.MAX_ID_LENGTH), False),
                               pc.fill_null(pc.greater(pc.utf8_length(table[S.CATEGORY_ID]), S.MAX_ID_LENGTH), False))),
        (BAD_PRICE, pc.fill_null(pc.or_(pc.less(table[S.PRICE], 0.0), pc.invert(pc.is_finite(table[S.PRICE]))), False)),
        (TOO_MANY_ATTRIBUTES, pc.fill_null(pc.greater(pc.list_value_length(table["attributes"]), MAX_ATTRIBUTES), False)),
    ]
    for reason, mask in checks:
        hit = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool) & (reasons == None)  # noqa: E711
        reasons[hit] = reason
    return reasons


def validate_catalogue(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """A reader's table (``READ_SCHEMA``) -> (kept rows in ``CATALOGUE_SCHEMA``, rejects).

    A row is rejected with the first reason that applies: the reader's own, a missing or
    over-long id, a negative or non-finite price, over ``MAX_ATTRIBUTES`` attributes, or an
    id already given by an earlier row (``duplicate_item_id``: the first row wins).
    Kept ids, titles and brands are trimmed; empty strings become null.
    """
    table = _conform(table)
    reasons = _reason_column(table)
    ids = table[S.ITEM_ID].to_pylist()
    seen: set[str] = set()
    for i, (item, reason) in enumerate(zip(ids, reasons)):
        if reason is None:
            if item.strip() in seen:
                reasons[i] = DUPLICATE_ITEM_ID
            else:
                seen.add(item.strip())
    bad = np.flatnonzero(reasons != None)  # noqa: E711
    raw = table[RAW_ROW].to_pylist() if RAW_ROW in table.column_names else [None] * table.num_rows
    rejects = pa.table({
        "row": pa.array(bad, pa.int64()),
        "raw": pa.array([raw[i] if raw[i] is not None else _row_text(table, i) for i in bad], pa.string()),
        "reason": pa.array(reasons[bad].tolist(), pa.string()),
    }, schema=REJECTS_SCHEMA)
    kept = table.filter(pa.array(reasons == None)).select(CATALOGUE_SCHEMA.names)  # noqa: E711
    kept = kept.set_column(0, S.ITEM_ID, pc.utf8_trim_whitespace(kept[S.ITEM_ID]))
    for name in ("title", "brand", S.CATEGORY_ID):
        column = pc.utf8_trim_whitespace(kept[name])
        kept = kept.set_column(kept.schema.get_field_index(name), name,
                               pc.if_else(pc.equal(pc.utf8_length(column), 0), None, column))
    return kept.cast(CATALOGUE_SCHEMA), rejects


def count_reasons(rejects: pa.Table) -> dict[str, int]:
    values, counts = np.unique(np.asarray(rejects["reason"].to_pylist(), dtype=object).astype(str),
                               return_counts=True) if rejects.num_rows else ([], [])
    return {str(v): int(c) for v, c in zip(values, counts)}


def _conform(table: pa.Table) -> pa.Table:
    """Missing catalogue columns as nulls, types as ``READ_SCHEMA`` says."""
    columns = {}
    for f in READ_SCHEMA:
        if f.name in table.column_names:
            columns[f.name] = table[f.name].cast(f.type)
        else:
            columns[f.name] = pa.nulls(table.num_rows, f.type)
    return pa.table(columns, schema=READ_SCHEMA)


def _row_text(table: pa.Table, i: int) -> str:
    row = {k: v for k, v in table.slice(i, 1).to_pylist()[0].items() if k not in (READ_ERROR, RAW_ROW)}
    return json.dumps(row, default=str, ensure_ascii=False)[:MAX_TEXT_LENGTH]


# ---------------------------------------------------------------- the artifact


@dataclass(frozen=True)
class CatalogueSummary:
    rows_read: int
    rows_kept: int
    rows_rejected: int
    rejected_by_reason: dict[str, int]
    version: str  # a hash of the kept rows: the catalogue a model was trained with

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def catalogue_version(kept: pa.Table) -> str:
    digest = hashlib.sha256()
    for batch in kept.sort_by(S.ITEM_ID).to_batches(max_chunksize=65536):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()[:12]


def write_catalogue(kept: pa.Table, rejects: pa.Table, index: np.ndarray, directory: str,
                    rows_read: int) -> CatalogueSummary:
    """``kept`` rows with their vocabulary indices (``index``, aligned) into
    ``directory/catalogue/``; returns the summary featurize puts in its manifest."""
    base = os.path.join(directory, CATALOGUE_DIR)
    os.makedirs(base, exist_ok=True)
    stored = kept.append_column(INDEX, pa.array(np.asarray(index, dtype=np.int64)))
    pq.write_table(stored.sort_by(INDEX), os.path.join(base, CATALOGUE_ITEMS_FILE))
    pq.write_table(rejects, os.path.join(base, CATALOGUE_REJECTS_FILE))
    return CatalogueSummary(rows_read, kept.num_rows, rejects.num_rows, count_reasons(rejects),
                            catalogue_version(kept))


def load_catalogue(directory: str) -> pa.Table | None:
    """``STORED_SCHEMA`` rows of an artifacts directory (or checkpoint), or None without one."""
    path = os.path.join(directory, CATALOGUE_DIR, CATALOGUE_ITEMS_FILE)
    return pq.read_table(path).cast(STORED_SCHEMA) if os.path.isfile(path) else None


def load_catalogue_rejects(directory: str) -> pa.Table:
    path = os.path.join(directory, CATALOGUE_DIR, CATALOGUE_REJECTS_FILE)
    return pq.read_table(path) if os.path.isfile(path) else REJECTS_SCHEMA.empty_table()


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenConfig:
    """How catalogue rows become the content token ids a model reads."""

    fields: tuple[str, ...] = CONTENT_FIELDS
    buckets: int = 1 << 16  # hashed-token table rows (row 0 = padding)
    max_tokens: int = 32  # per item: category, brand, price first, then attributes, then title words

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        unknown = sorted(set(self.fields) - set(CONTENT_FIELDS))
        if unknown:
            raise ValueError(f"unknown content fields {unknown}; known: {', '.join(CONTENT_FIELDS)}")
        if not isinstance(self.buckets, int) or self.buckets < 2:
            raise ValueError(f"buckets must be an int >= 2, got {self.buckets!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, got {self.max_tokens!r}")


def price_bucket(price: float) -> int:
    """Half-octave price buckets: 0-1 -> 0, ~1.4 -> 1, 2 -> 2, 4 -> 4, 100 -> 13."""
    return int(math.floor(2.0 * math.log2(1.0 + float(price))))


def title_words(title: str) -> list[str]:
    return _WORD.findall(title.lower())


def category_token(raw_category: str) -> str:
    return _PREFIX["category"] + str(raw_category)


def row_tokens(row: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """One catalogue row's tokens (prefixed by field), in the order ``item_tokens`` keeps."""
    out: list[str] = []
    if "category" in fields and row.get(S.CATEGORY_ID) is not None:
        out.append(category_token(row[S.CATEGORY_ID]))
    if "brand" in fields and row.get("brand"):
        out.append(_PREFIX["brand"] + str(row["brand"]).strip().lower())
    price = row.get(S.PRICE)
    if "price" in fields and price is not None and math.isfinite(price) and price >= 0:
        out.append(_PREFIX["price"] + str(price_bucket(price)))
    if "attributes" in fields:
        out.extend(_PREFIX["attributes"] + str(a) for a in row.get("attributes") or ())
    if "title" in fields and row.get("title"):
        out.extend(_PREFIX["title"] + w for w in title_words(str(row["title"])))
    return list(dict.fromkeys(out))  # distinct, first occurrence kept


def hash_tokens(tokens: Sequence[str], buckets: int) -> np.ndarray:
    """Stable token -> row in 1..buckets-1 (blake2b; never Python's salted ``hash``)."""
    out = np.empty(len(tokens), dtype=np.int64)
    for i, token in enumerate(tokens):
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") % (buckets - 1) + 1
    return out


def item_tokens(rows: Iterable[Mapping[str, Any]], config: TokenConfig) -> np.ndarray:
    """Catalogue rows -> (N, max_tokens) int32 hashed token ids, 0-padded on the right.

    Each distinct token string is hashed once, so a large catalogue costs one hash per
    distinct category, brand, attribute and word, not per occurrence.
    """
    per_row = [row_tokens(r, config.fields)[: config.max_tokens] for r in rows]
    distinct = sorted({t for tokens in per_row for t in tokens})
    ids = dict(zip(distinct, hash_tokens(distinct, config.buckets).tolist()))
    out = np.zeros((len(per_row), config.max_tokens), dtype=np.int32)
    for i, tokens in enumerate(per_row):
        out[i, : len(tokens)] = [ids[t] for t in tokens]
    return out


def vocab_item_tokens(catalogue: pa.Table | None, num_items: int, config: TokenConfig) -> np.ndarray:
    """(num_items, max_tokens) tokens for a vocabulary's rows from a stored catalogue
    (``STORED_SCHEMA``); items without a catalogue row get only what the vocabulary knows
    (nothing here: their category arrives with ``category_tokens``)."""
    out = np.zeros((num_items, config.max_tokens), dtype=np.int32)
    if catalogue is None or catalogue.num_rows == 0:
        return out
    index = catalogue[INDEX].to_numpy()
    keep = (index >= S.FIRST_ID_INDEX) & (index < num_items)
    rows = catalogue.filter(pa.array(keep)).to_pylist()
    out[index[keep]] = item_tokens(rows, config)
    return out


def category_tokens(item_category_raw: Sequence[str | None], tokens: np.ndarray, config: TokenConfig) -> np.ndarray:
    """Add each item's category (from the event log, where the catalogue gave none) as a
    token, in place where a row has room; returns ``tokens``. Category is content the log
    itself carries (Taobao, DIGINETICA), so a model reads it even without a catalogue."""
    if "category" not in config.fields:
        return tokens
    names = [None if c is None else category_token(c) for c in item_category_raw]
    distinct = sorted({n for n in names if n is not None})
    ids = dict(zip(distinct, hash_tokens(distinct, config.buckets).tolist()))
    for i, name in enumerate(names):
        if name is None or i < S.FIRST_ID_INDEX:
            continue
        row = tokens[i]
        token = ids[name]
        if token in row:
            continue
        free = np.flatnonzero(row == 0)
        if len(free):
            row[free[0]] = token
    return tokens
