"""Catalogue readers: real item-catalogue files -> ``catalogue.READ_SCHEMA`` tables.

Formats (``CATALOGUE_FORMATS``):

- ``items``: the generic catalogue, by extension. Parquet (``.parquet``, ``.pq``) and CSV
  with a header (``.csv``, ``.csv.gz``) name their columns: ``item_id`` plus any of
  ``title``, ``category_id``, ``brand``, ``price``, ``attributes`` (a list, or one string
  of ``|``-separated tokens); other columns are ignored. JSON is a list of objects
  (``.json``) or one object per line (``.jsonl``, ``.ndjson``), with the same keys.
- ``s3rec-attributes``: S3-Rec ``*_item2attributes.json``, one object item id -> list of
  attribute ids.
- ``diginetica``: CIKM Cup 2016 ``product-categories.csv``, ``itemId;categoryId``.
- ``jdsearch``: JDsearch ``product_meta_data*.txt``, a TSV whose names are term ids joined
  by ``\\x18``: the title is those ids joined by spaces (one word per term), the category
  the finest ``cate_id_*`` given, the attributes ``cate1:``/``cate2:``/``cate3:``/``shop:``
  tokens. ``-1`` (the sample's unknown shop) counts as absent.
- ``taobao``: a Taobao UserBehavior log (file, directory or glob, as the event reader
  takes it): one row per item with its most frequent category, ties to the smallest id.

Readers never drop a row. A row they cannot parse comes back with ``_error`` set and its
original text in ``_raw`` (at most ``MAX_TEXT_LENGTH`` characters): ``malformed_row`` (a
line with the wrong field count, a JSON line that is not an object, a value of the wrong
kind; for Taobao, a line the event reader rejects, since its category is not evidence),
``bad_price`` (given but not a number) or ``bad_encoding`` (invalid UTF-8 in an id, which
then could not match the event log's). ``_raw`` is null for rows that parsed:
``validate_catalogue`` shows their parsed fields instead. Blank lines are not rows.
Ints as ids become decimal strings. A file that is not of its format at all (no
``item_id`` column, a wrong header, JSON of the wrong shape) raises ValueError naming it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqrec_ray import schema as S
from seqrec_ray.data import readers as R
from seqrec_ray.data.catalogue import (
    BAD_PRICE,
    CATALOGUE_SCHEMA,
    MALFORMED_ROW,
    MAX_TEXT_LENGTH,
    RAW_ROW,
    READ_ERROR,
    READ_SCHEMA,
    _conform,
)

CATALOGUE_FORMATS = ("items", "s3rec-attributes", "diginetica", "jdsearch", "taobao")
CATALOGUE_FORMAT_HELP = {
    "items": "generic catalogue by extension: .parquet/.pq, .csv/.csv.gz (header), .json (list of "
             "objects), .jsonl/.ndjson; item_id plus any of title, category_id, brand, price, attributes",
    "s3rec-attributes": "S3-Rec *_item2attributes.json: one JSON object item id -> list of attribute ids",
    "diginetica": "DIGINETICA product-categories.csv: ';'-separated itemId;categoryId",
    "jdsearch": "JDsearch product_meta_data*.txt: TSV wid, name, brand_id, ..., cate_id_1..4, ..., shop_id",
    "taobao": "Taobao UserBehavior CSV (file, directory or glob): each item's most frequent category",
}

ATTRIBUTE_SEPARATOR = "|"
_BLOCK_BYTES = 1 << 24
_CSV_SUFFIXES = (".csv", ".csv.gz")
_JSON_SUFFIXES = (".json", ".json.gz")
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_NUMBER = re.compile(R._NUMBER)

_DIGINETICA = R._Layout(";", ("itemId", "categoryId"), True, False, _CSV_SUFFIXES, ())
_JD_CATEGORIES = tuple(f"cate_id_{k}" for k in (1, 2, 3, 4))
_JDSEARCH = R._Layout("\t", ("wid", "name", "brand_id", "brand_name", "cate_id_1", "cate_name_1",
                             "cate_id_2", "cate_name_2", "cate_id_3", "cate_name_3", "cate_id_4",
                             "cate_name_4", "shop_id"), True, False, (".txt",), ())
_JD_ABSENT = pa.array(["", "-1"])
_JD_NAME_SEPARATOR = "\x18"

# A reader's raw-text source: row positions of one table -> their original text.
RawText = Callable[[np.ndarray], list]


class _Malformed(Exception):
    """A JSON value of a kind the catalogue cannot hold (raised and caught per row)."""


class _Entries(list):
    """A JSON object's (key, value) pairs, duplicate keys kept (``json`` keeps the last)."""


def _not_format(path: str, fmt: str, what: str) -> ValueError:
    return ValueError(f"{path}: not a {fmt} catalogue: {what}; the {fmt} format reads "
                      f"{CATALOGUE_FORMAT_HELP[fmt]}")


# ---------------------------------------------------------------- shared row building


def _empty() -> pa.Table:
    return READ_SCHEMA.empty_table()


def _clip(texts: Sequence[str]) -> list[str]:
    return [t[:MAX_TEXT_LENGTH] for t in texts]


def _finish(table: pa.Table, raw_text: RawText) -> pa.Table:
    """Mark ids holding a repaired (U+FFFD) character ``bad_encoding`` and give every row
    with an ``_error`` but no ``_raw`` its original text."""
    error = table[READ_ERROR]
    repaired = pa.repeat(pa.scalar(False), table.num_rows)
    for name in (S.ITEM_ID, S.CATEGORY_ID):
        repaired = pc.or_(repaired, pc.fill_null(pc.match_substring(table[name], "\ufffd"), False))
    error = pc.if_else(pc.and_(repaired, pc.is_null(error)), pa.scalar(S.BAD_ENCODING), error)
    need = np.flatnonzero(pc.and_(pc.is_valid(error), pc.is_null(table[RAW_ROW])).to_numpy(zero_copy_only=False))
    table = table.set_column(table.schema.get_field_index(READ_ERROR), READ_ERROR, error)
    if need.size:
        raw = np.array(table[RAW_ROW].to_pylist(), dtype=object)
        raw[need] = _clip(raw_text(need))
        table = table.set_column(table.schema.get_field_index(RAW_ROW), RAW_ROW, pa.array(raw.tolist(), pa.string()))
    return table


def _malformed(texts: Sequence[str]) -> pa.Table:
    n = len(texts)
    return _conform(pa.table({READ_ERROR: pa.array([MALFORMED_ROW] * n, pa.string()),
                              RAW_ROW: pa.array(_clip(texts), pa.string())}))


def _lists(values: pa.Array, rows: np.ndarray, n: int) -> pa.Array:
    """``values[k]`` into list row ``rows[k]`` (non-decreasing); a row with none is null."""
    counts = np.bincount(rows, minlength=n)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, values, mask=pa.array(counts == 0))


def _array(col) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _split_attributes(col: pa.Array) -> pa.Array:
    """``"a | b||c"`` -> ``["a", "b", "c"]``: trimmed, empty tokens dropped."""
    pieces = pc.split_pattern(col, ATTRIBUTE_SEPARATOR)
    tokens = pc.utf8_trim_whitespace(pc.list_flatten(pieces))
    keep = pc.greater(pc.utf8_length(tokens), 0)
    rows = pc.list_parent_indices(pieces).to_numpy()[keep.to_numpy(zero_copy_only=False)]
    return _lists(tokens.filter(keep), rows, len(pieces))


def _attribute_column(col) -> pa.Array:
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        return pc.cast(col, pa.list_(pa.string()))
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return _split_attributes(_array(pc.cast(col, pa.string())))
    raise ValueError(f"attributes column of type {col.type}, expected a list or a "
                     f"{ATTRIBUTE_SEPARATOR!r}-separated string")


def _from_columns(raw: pa.Table) -> pa.Table:
    """Named catalogue columns of any type (strings from CSV, typed from Parquet) ->
    ``READ_SCHEMA``; a price that is given but not a number is ``bad_price``."""
    cols: dict[str, Any] = {}
    for name in (S.ITEM_ID, "title", S.CATEGORY_ID, "brand"):
        if name in raw.column_names:
            cols[name] = R._empty_to_null(R._strings(raw[name]))
    if S.PRICE in raw.column_names:
        source = raw[S.PRICE]
        is_text = pa.types.is_string(source.type) or pa.types.is_large_string(source.type)
        price = R._numeric(source)
        given = pc.invert(R._is_missing(R._strings(source))) if is_text else pc.is_valid(source)
        cols[S.PRICE] = price
        cols[READ_ERROR] = pc.if_else(pc.and_(given, pc.is_null(price)), pa.scalar(BAD_PRICE),
                                      pa.scalar(None, pa.string()))
    if "attributes" in raw.column_names:
        cols["attributes"] = _attribute_column(raw["attributes"])
    return _conform(pa.table(cols))


# ---------------------------------------------------------------- delimited text


def _rows_follow_header(path: str) -> bool:
    """Whether anything but blank lines follows the first line (pyarrow refuses a file
    that is a header without a newline, so a header-only file is answered here)."""
    with R._Utf8Repair(path) as stream:
        head = b""
        while b"\n" not in head:
            chunk = stream.read(1 << 16)
            if not chunk:
                return False
            head += chunk
        rest = head.split(b"\n", 1)[1]
        while not rest.strip():
            rest = stream.read(1 << 16)
            if not rest:
                return False
    return True


def _joined_lines(block: pa.Table, rows: np.ndarray, delimiter: str) -> list[str]:
    """The rows' fields joined by the delimiter: the original line for unquoted formats."""
    picked = block.take(pa.array(rows))
    return pc.binary_join_element_wise(*picked.columns, delimiter).to_pylist()


def _csv_lines(block: pa.Table, rows: np.ndarray) -> list[str]:
    out = []
    for row in block.take(pa.array(rows)).to_pylist():
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(row.values())
        out.append(line.getvalue())
    return out


def _read_delimited(path: str, layout: R._Layout, convert: Callable[[pa.Table], pa.Table],
                    raw_lines: Callable[[pa.Table, np.ndarray], list]) -> pa.Table:
    """A header-led delimited file -> ``READ_SCHEMA``: ``convert`` per block of string
    columns; lines with the wrong field count come back as ``malformed_row``."""
    if not _rows_follow_header(path):
        return _empty()
    tables = []
    with R._Utf8Repair(path) as source:
        for block, bad in R._iter_csv_blocks(source, layout.columns, 1, layout, _BLOCK_BYTES):
            if block.num_rows:
                tables.append(_finish(convert(block), partial(raw_lines, block)))
            if bad:
                tables.append(_malformed(bad))
    return pa.concat_tables(tables) if tables else _empty()


def _diginetica(block: pa.Table) -> pa.Table:
    return _from_columns(pa.table({S.ITEM_ID: block["itemId"], S.CATEGORY_ID: block["categoryId"]}))


def _jd_id(col) -> pa.Array:
    col = R._strings(col)
    return pc.if_else(pc.is_in(col, value_set=_JD_ABSENT), pa.scalar(None, pa.string()), col)


def _jdsearch(block: pa.Table) -> pa.Table:
    n = block.num_rows
    cates = [_jd_id(block[name]) for name in _JD_CATEGORIES]
    tagged = [pc.binary_join_element_wise(prefix, col, "")
              for prefix, col in zip(("cate1:", "cate2:", "cate3:", "shop:"), (*cates[:3], _jd_id(block["shop_id"])))]
    stacked = pa.concat_arrays([_array(col) for col in tagged])  # column-major: tagged[j][i] at j * n + i
    order = (np.arange(n)[:, None] + n * np.arange(len(tagged))[None, :]).ravel()
    values = stacked.take(pa.array(order))
    present = values.is_valid().to_numpy(zero_copy_only=False)
    attributes = _lists(values.filter(pa.array(present)), np.repeat(np.arange(n), len(tagged))[present], n)
    title = R._empty_to_null(pc.replace_substring(R._strings(block["name"]), _JD_NAME_SEPARATOR, " "))
    return _conform(pa.table({
        S.ITEM_ID: R._empty_to_null(R._strings(block["wid"])), "title": title,
        S.CATEGORY_ID: pc.coalesce(*reversed(cates)), "brand": _jd_id(block["brand_id"]),
        "attributes": attributes,
    }))


def _read_diginetica(path: str) -> pa.Table:
    R._header_columns(path, "diginetica", _DIGINETICA)
    return _read_delimited(path, _DIGINETICA, _diginetica, partial(_joined_lines, delimiter=";"))


def _read_jdsearch(path: str) -> pa.Table:
    R._header_columns(path, "jdsearch", _JDSEARCH)
    return _read_delimited(path, _JDSEARCH, _jdsearch, partial(_joined_lines, delimiter="\t"))


def _read_items_csv(path: str) -> pa.Table:
    layout = R._Layout(",", (), True, True, _CSV_SUFFIXES, ())
    names = list(R._header_columns(path, "items", layout))
    names[0] = names[0].removeprefix("\ufeff")
    if S.ITEM_ID not in names:
        raise _not_format(path, "items", f"header {names} has no {S.ITEM_ID!r} column")
    layout = R._Layout(",", tuple(names), True, True, _CSV_SUFFIXES, ())
    known = [c for c in names if c in CATALOGUE_SCHEMA.names]
    return _read_delimited(path, layout, lambda block: _from_columns(block.select(known)), _csv_lines)


def _read_items_parquet(path: str) -> pa.Table:
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as err:
        raise _not_format(path, "items", f"unreadable as Parquet ({err})") from None
    if S.ITEM_ID not in names:
        raise _not_format(path, "items", f"columns {names} have no {S.ITEM_ID!r}")
    table = pq.read_table(path, columns=[c for c in CATALOGUE_SCHEMA.names if c in names])

    def as_json(rows: np.ndarray) -> list[str]:
        return [json.dumps(r, default=str, ensure_ascii=False) for r in table.take(pa.array(rows)).to_pylist()]

    return _finish(_from_columns(table), as_json)


# ---------------------------------------------------------------- JSON


def _read_text(path: str) -> str:
    """A (possibly .gz) UTF-8 file as text, invalid bytes as U+FFFD, no byte-order mark."""
    with R._Utf8Repair(path) as stream:
        return stream.read().decode("utf-8").removeprefix("\ufeff")


def _token(value: Any) -> str:
    """A JSON id or attribute: a string, or an int as its decimal string."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _Malformed


def _id(value: Any) -> str | None:
    return None if value is None else _token(value)


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, float) else _id(value)


def _attributes(value: Any) -> list[str] | None:
    """A JSON list of ids, or one ``|``-separated string, -> attribute strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return [t.strip() for t in value.split(ATTRIBUTE_SEPARATOR) if t.strip()] or None
    if type(value) is not list:  # an _Entries (a JSON object) is not a list of attributes
        raise _Malformed
    return [_token(a) for a in value]


def _price(value: Any) -> float | None:
    """A JSON price -> float or None; ValueError when it is given but not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    raise ValueError(value)


def _json_row(value: Any) -> dict[str, Any]:
    """One JSON value -> a ``READ_SCHEMA`` row dict (``_raw`` left for ``_finish``)."""
    if not isinstance(value, dict):
        return {READ_ERROR: MALFORMED_ROW}
    try:
        row = {S.ITEM_ID: _id(value.get(S.ITEM_ID)), "title": _text(value.get("title")),
               S.CATEGORY_ID: _id(value.get(S.CATEGORY_ID)), "brand": _text(value.get("brand")),
               "attributes": _attributes(value.get("attributes"))}
    except _Malformed:
        return {READ_ERROR: MALFORMED_ROW}
    try:
        row[S.PRICE] = _price(value.get(S.PRICE))
    except ValueError:
        row[READ_ERROR] = BAD_PRICE
    return row


def _json_table(path: str, values: list, texts: RawText) -> pa.Table:
    if values and not any(isinstance(v, dict) and S.ITEM_ID in v for v in values):
        raise _not_format(path, "items", f"no object has an {S.ITEM_ID!r} key")
    return _finish(pa.Table.from_pylist([_json_row(v) for v in values], schema=READ_SCHEMA), texts)


def _read_items_json(path: str) -> pa.Table:
    try:
        values = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise _not_format(path, "items", f"invalid JSON ({err})") from None
    if not isinstance(values, list):
        raise _not_format(path, "items", f"JSON {type(values).__name__}, not a list of objects")
    return _json_table(path, values, lambda rows: [json.dumps(values[i], ensure_ascii=False) for i in rows])


def _read_items_jsonl(path: str) -> pa.Table:
    lines = [line.rstrip("\r") for line in _read_text(path).split("\n")]
    lines = [line for line in lines if line.strip()]
    values: list = []
    for line in lines:
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError:
            values.append(None)  # not an object: a malformed_row
    return _json_table(path, values, lambda rows: [lines[i] for i in rows])


def _plain(value: Any) -> Any:
    if isinstance(value, _Entries):
        return {k: _plain(v) for k, v in value}
    return [_plain(v) for v in value] if isinstance(value, list) else value


def _read_s3rec_attributes(path: str) -> pa.Table:
    fmt = "s3rec-attributes"
    try:
        entries = json.loads(_read_text(path), object_pairs_hook=_Entries)
    except json.JSONDecodeError as err:
        raise _not_format(path, fmt, f"invalid JSON ({err})") from None
    if not isinstance(entries, _Entries):
        raise _not_format(path, fmt, f"JSON {type(entries).__name__}, not an object")
    rows = []
    for key, value in entries:
        try:
            if type(value) is not list:
                raise _Malformed
            rows.append({S.ITEM_ID: key, "attributes": _attributes(value)})
        except _Malformed:
            rows.append({S.ITEM_ID: key, READ_ERROR: MALFORMED_ROW})
    table = pa.Table.from_pylist(rows, schema=READ_SCHEMA)
    return _finish(table, lambda idx: [json.dumps({entries[i][0]: _plain(entries[i][1])}) for i in idx])


# ---------------------------------------------------------------- Taobao


def _taobao_block(block: pa.Table, repaired: bool) -> tuple[pa.Table, pa.Table]:
    """One block of raw Taobao columns -> ((item, category, count) of the lines the event
    reader accepts, READ_SCHEMA rows for those it rejects)."""
    events = R._taobao(block)
    if repaired:
        events = R._mark_bad_encoding(events)
    reason = events[S.INVALID_REASON]
    ok = pc.is_null(reason)
    counts = (events.filter(ok).select([S.ITEM_ID, S.CATEGORY_ID])
              .group_by([S.ITEM_ID, S.CATEGORY_ID]).aggregate([([], "count_all")]))
    bad = pc.invert(ok)
    error = pc.if_else(pc.equal(reason, S.BAD_ENCODING), pa.scalar(S.BAD_ENCODING), pa.scalar(MALFORMED_ROW))
    raw = pc.binary_join_element_wise(*block.filter(bad).columns, ",")
    rejected = _conform(pa.table({READ_ERROR: error.filter(bad),
                                  RAW_ROW: pc.utf8_slice_codeunits(raw, 0, MAX_TEXT_LENGTH)}))
    return counts, rejected


def _most_frequent_category(counts: pa.Table) -> pa.Table:
    """(item, category, count) partial counts -> one row per item with its most frequent
    category; ties go to the smallest id: numerically for the digit ids Taobao uses
    (shorter first, then by text), deterministic for any string. An item seen only
    without a category gets null."""
    total = counts.group_by([S.ITEM_ID, S.CATEGORY_ID]).aggregate([("count_all", "sum")])
    voted = total.filter(pc.is_valid(total[S.CATEGORY_ID]))
    voted = voted.append_column("length", pc.utf8_length(voted[S.CATEGORY_ID])).sort_by([
        (S.ITEM_ID, "ascending"), ("count_all_sum", "descending"), ("length", "ascending"),
        (S.CATEGORY_ID, "ascending")])
    items = voted[S.ITEM_ID].combine_chunks()
    first = np.ones(len(items), dtype=bool)
    if len(items) > 1:
        first[1:] = pc.not_equal(items[1:], items[:-1]).to_numpy(zero_copy_only=False)
    best = voted.filter(pa.array(first)).select([S.ITEM_ID, S.CATEGORY_ID])
    every = pc.unique(total[S.ITEM_ID])
    unvoted = every.filter(pc.invert(pc.is_in(every, value_set=best[S.ITEM_ID].combine_chunks())))
    none = pa.table({S.ITEM_ID: unvoted, S.CATEGORY_ID: pa.nulls(len(unvoted), pa.string())})
    return _conform(pa.concat_tables([best, none]).sort_by(S.ITEM_ID))


def _read_taobao(path: str) -> pa.Table:
    layout = R._layout("taobao")
    counts, rejected = [], []
    for file in R.list_input_files(path, "taobao"):
        R._sniff(file, "taobao")
        if R._read_header(file) is None:  # only blank lines
            continue
        with R._Utf8Repair(file) as source:
            for block, bad in R._iter_csv_blocks(source, layout.columns, 0, layout, _BLOCK_BYTES):
                block_counts, block_rejected = _taobao_block(block, source.repaired)
                counts.append(block_counts)
                rejected += [block_rejected, _malformed(bad)]
    if not counts:
        return _empty()
    items = _most_frequent_category(pa.concat_tables(counts))
    return pa.concat_tables([items, *rejected])


# ---------------------------------------------------------------- public API


def _read_items(path: str) -> pa.Table:
    name = os.path.basename(path).lower()
    for suffixes, read in ((_PARQUET_SUFFIXES, _read_items_parquet), (_CSV_SUFFIXES, _read_items_csv),
                           (_JSON_SUFFIXES, _read_items_json), (_JSONL_SUFFIXES, _read_items_jsonl)):
        if name.endswith(suffixes):
            return read(path)
    known = _PARQUET_SUFFIXES + _CSV_SUFFIXES + _JSON_SUFFIXES + _JSONL_SUFFIXES
    raise ValueError(f"{path}: the items format reads names ending in {', '.join(known)}")


_READERS: dict[str, Callable[[str], pa.Table]] = {
    "items": _read_items,
    "s3rec-attributes": _read_s3rec_attributes,
    "diginetica": _read_diginetica,
    "jdsearch": _read_jdsearch,
    "taobao": _read_taobao,
}


def read_catalogue(path: str, fmt: str) -> pa.Table:
    """A catalogue file (Taobao: also a directory or glob) -> a ``READ_SCHEMA`` table with
    one row per parsed item and one per unparseable row (``_error`` and ``_raw`` set)."""
    if fmt not in _READERS:
        raise ValueError(f"unknown catalogue format {fmt!r}; known formats: {', '.join(CATALOGUE_FORMATS)}")
    path = str(path)
    if fmt != "taobao" and not os.path.isfile(path):
        if os.path.exists(path):
            raise ValueError(f"{path}: a directory; the {fmt} catalogue format reads one file")
        raise FileNotFoundError(f"catalogue file {path!r} does not exist")
    try:
        return _READERS[fmt](path)
    except (ValueError, pa.ArrowException) as err:
        if isinstance(err, ValueError) and path in str(err):
            raise
        raise _not_format(path, fmt, str(err)) from err
