"""Readers: real behaviour-log sources -> ``schema.READER_SCHEMA`` tables (pure pyarrow).

Formats (``FORMATS``):

- ``taobao``: Alibaba UserBehavior, headerless CSV ``user,item,category,behavior,unix_ts``;
  behaviours ``pv`` -> view, ``cart``, ``fav``, ``buy`` -> purchase.
- ``yoochoose``: RecSys'15 clicks, TSV with header ``SessionId ItemId Time``; every row is
  a ``click`` whose user and session are the session id (the source has no user ids).
- ``diginetica``: CIKM Cup 2016 ``train-purchases.csv``, ``;``-separated with header
  ``sessionId;userId;timeframe;eventdate;ordernumber;itemId``; every row is a
  ``purchase`` at ``eventdate`` midnight UTC + ``timeframe`` milliseconds. Anonymous rows
  (``userId`` NA or empty) get the user id ``session-<sessionId>``: the prefix keeps them
  apart from real user ids, which share the same number space. Categories come from
  ``product-categories.csv`` (``itemId;categoryId``) in the same directory, if present.
- ``s3rec``: S3-Rec sequence files, ``user item item ...`` per line in time order; each
  item is a ``purchase`` whose timestamp is its position in the line (0, 1, 2, ...).
- ``bestbuy``: the Best Buy mobile search -> click log, CSV with header
  ``user,sku,category,query,click_time,query_time``, times ``YYYY-MM-DD HH:MM:SS[.fff]``
  read as UTC. Every row is one ``click`` at ``click_time`` carrying the query as typed
  (typos and case kept, surrounding whitespace stripped; empty -> null); one search is one
  session, ``<user>/<query_time>``. No ``search`` event is made: the log does not say what
  the search returned, and one carrying the clicked SKU would leak the target.
- ``jdsearch``: JDsearch (SIGIR'23) ``user_behavior_data*.txt``, TSV with header
  ``query candidate_wid_list candidate_label_list history_qry_list history_wid_list
  history_type_list history_time_list``, lists joined with ``_``, query terms with ``\x18``
  (written here as spaces). A row is one user, ``jd-<n>`` with n its row number in the file
  from 1 (so the rows of one user base must be in one file). Each history entry is an
  event: ``CLICK`` -> click, ``CART``, ``FLW`` (follow) -> fav, ``ORD`` -> purchase, with
  its query unless ``-1`` (query-less). Times are seconds since the user's first event: the
  time list holds gaps (the first 0) plus one for the row's own search, whose candidates
  with label 1 / 2 / 3 become a click / cart / purchase carrying the row's query (label 0:
  no event). A wid ``-1`` is a missing item. Lists whose lengths disagree make every event
  of the row ``wrong_column_count``; a row without history or positive candidates yields
  one ``missing_item_id`` row.
- ``events``: Parquet or CSV (with header) already in the project schema; extra columns
  are ignored, missing optional columns are null.

Readers never drop a row. A row that cannot be used comes out with what could be read and
a reason in ``invalid_reason`` (the first that applies, in this order):
``wrong_column_count`` (the raw line is kept in ``query``), ``bad_encoding`` (invalid
UTF-8, replaced by U+FFFD), ``missing_user_id``, ``missing_item_id``,
``unknown_event_type`` (the raw value is kept in ``event_type``), ``bad_timestamp``
(unparseable or non-finite), ``bad_price`` (given but unparseable or non-finite). Range
checks (a timestamp in 1970, a negative price) are featurize's job. Missing ids come out
null, never "". Blank lines hold no row and are not counted. An S3-Rec line with a user
and no items yields one ``missing_item_id`` row.

Timestamps are wall-clock seconds except for ``s3rec`` (positions) and ``jdsearch``
(seconds relative to each user's first event).
"""

from __future__ import annotations

import codecs
import fnmatch
import glob
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seqrec_ray import schema as S
from seqrec_ray.schema import (
    BAD_ENCODING,
    BAD_PRICE,
    BAD_TIMESTAMP,
    MISSING_ITEM_ID,
    MISSING_USER_ID,
    UNKNOWN_EVENT_TYPE,
    WRONG_COLUMN_COUNT,
)

FORMATS = ("taobao", "yoochoose", "diginetica", "s3rec", "bestbuy", "jdsearch", "events")


TAOBAO_BEHAVIOURS = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "purchase"}
DIGINETICA_CATEGORIES_FILE = "product-categories.csv"
ANONYMOUS_USER_PREFIX = "session-"
BESTBUY_COLUMNS = ("user", "sku", "category", "query", "click_time", "query_time")
JDSEARCH_COLUMNS = ("query", "candidate_wid_list", "candidate_label_list", "history_qry_list",
                    "history_wid_list", "history_type_list", "history_time_list")
JDSEARCH_TYPES = {"CLICK": "click", "CART": "cart", "FLW": "fav", "ORD": "purchase"}
JDSEARCH_LABELS = {1.0: "click", 2.0: "cart", 3.0: "purchase"}  # 0.0: shown, not engaged
JDSEARCH_USER_PREFIX = "jd-"
JDSEARCH_LIST_SEPARATOR = "_"
JDSEARCH_TERM_SEPARATOR = "\x18"
JDSEARCH_ABSENT = "-1"  # a query-less history entry; as a wid, no item

# A Converter turns one block of raw string columns into a READER_SCHEMA table.
Converter = Callable[[pa.Table], pa.Table]


@dataclass(frozen=True)
class _Layout:
    """How a format's files look on disk."""

    delimiter: str
    columns: tuple[str, ...]  # names given to the file's columns; () = from the header
    has_header: bool
    quoting: bool  # only the generic CSV quotes; elsewhere a stray quote must not eat lines
    suffixes: tuple[str, ...]  # data files in a directory or glob end with one of these
    side_files: tuple[str, ...]  # fnmatch patterns of files that are never data
    expands: bool = False  # a line may become several rows (s3rec, jdsearch)


_LAYOUTS = {
    "taobao": _Layout(",", ("user", "item", "category", "behavior", "ts"), False, False,
                      (".csv", ".csv.gz"), ()),
    "yoochoose": _Layout("\t", ("SessionId", "ItemId", "Time"), True, False,
                         (".txt", ".tsv", ".txt.gz", ".tsv.gz"), ()),
    "diginetica": _Layout(";", ("sessionId", "userId", "timeframe", "eventdate",
                                "ordernumber", "itemId"), True, False,
                          (".csv", ".csv.gz"), ("product-categories*",)),
    # One column per line: \x1f (ASCII unit separator) never occurs in these files.
    "s3rec": _Layout("\x1f", ("line",), False, False, (".txt", ".txt.gz"),
                     ("*_sample.txt", "*_sample.txt.gz"), expands=True),
    "bestbuy": _Layout(",", BESTBUY_COLUMNS, True, False, (".csv", ".csv.gz"), ()),
    "jdsearch": _Layout("\t", JDSEARCH_COLUMNS, True, False,
                        (".txt", ".tsv", ".txt.gz", ".tsv.gz"),
                        ("product_meta_data*", "product_data*"), expands=True),
    "events": _Layout(",", (), True, True, (".parquet", ".pq", ".csv", ".csv.gz"), ()),
}


# What each format expects, for the message about a file that is not of that kind.
_EXPECTED = {
    "taobao": "headerless comma-separated text: user,item,category,behavior,unix_ts",
    "yoochoose": "tab-separated text with the header SessionId, ItemId, Time",
    "diginetica": ("';'-separated text with the header "
                   "sessionId;userId;timeframe;eventdate;ordernumber;itemId"),
    "s3rec": "text lines 'user item item ...'",
    "bestbuy": f"comma-separated text with the header {','.join(BESTBUY_COLUMNS)}",
    "jdsearch": f"tab-separated text with the header {', '.join(JDSEARCH_COLUMNS)}",
    "events": "Parquet (.parquet, .pq) or comma-separated text with a header (.csv, .csv.gz)",
}


def _layout(fmt: str) -> _Layout:
    if fmt not in _LAYOUTS:
        raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return _LAYOUTS[fmt]


# ---------------------------------------------------------------- input files


def _is_side_file(name: str, layout: _Layout) -> bool:
    return name.startswith((".", "_")) or any(fnmatch.fnmatch(name, p) for p in layout.side_files)


def list_input_files(path: str, fmt: str) -> list[str]:
    """A file, a directory (not recursive) or a glob -> sorted absolute data-file paths."""
    layout = _layout(fmt)
    if os.path.isfile(path):
        if _is_side_file(os.path.basename(path), layout):
            raise ValueError(f"{path} is a side file of the {fmt} format, not a data file")
        return [os.path.abspath(path)]
    if os.path.isdir(path):
        candidates = [os.path.join(path, name) for name in os.listdir(path)]
    elif any(ch in path for ch in "*?["):
        candidates = glob.glob(path, recursive=True)
    else:
        raise FileNotFoundError(f"input path {path!r} does not exist")
    files = sorted(
        os.path.abspath(p)
        for p in candidates
        if os.path.isfile(p)
        and os.path.basename(p).endswith(layout.suffixes)
        and not _is_side_file(os.path.basename(p), layout)
    )
    if not files:
        raise FileNotFoundError(
            f"no {fmt} data files at {path!r} (looking for names ending in "
            f"{', '.join(layout.suffixes)})"
        )
    return files


# ---------------------------------------------------------------- vectorised parsing


def _strings(col: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Any column as trimmed strings (ids may arrive as ints from Parquet)."""
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string())
    return pc.utf8_trim_whitespace(col)


def _is_missing(col) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_length(col), 0), True)


def _empty_to_null(col):
    return pc.if_else(_is_missing(col), pa.scalar(None, pa.string()), col)


_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _parse_float(col) -> pa.Array:
    """Trimmed strings -> float64; null where unparseable (nan/inf parse, checked later)."""
    try:
        return pc.cast(col, pa.float64())  # the common case: every value parses
    except pa.ArrowInvalid:
        ok = pc.fill_null(pc.match_substring_regex(col, _NUMBER), False)
        return pc.cast(pc.if_else(ok, col, pa.scalar(None, pa.string())), pa.float64())


def _numeric(col) -> pa.Array:
    """A column of any numeric, timestamp or string type -> float64 (seconds for times)."""
    if pa.types.is_timestamp(col.type):
        per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[col.type.unit]
        return pc.divide(pc.cast(pc.cast(col, pa.int64()), pa.float64()), per_second)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return pc.cast(col, pa.float64())
    return _parse_float(_strings(col))


_DATETIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$"
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _datetime_seconds(col) -> pa.Array:
    """Trimmed ``YYYY-MM-DD HH:MM:SS[.fff]`` strings (UTC) -> float seconds since the
    epoch; null where malformed. strptime rolls 02-30 over to 03-02, so the parsed time
    must format back to the text it came from."""
    ok = pc.fill_null(pc.match_substring_regex(col, _DATETIME), False)
    whole = pc.utf8_slice_codeunits(pc.if_else(ok, col, pa.scalar(None, pa.string())), 0, 19)
    parsed = pc.strptime(whole, format=_DATETIME_FORMAT, unit="s", error_is_null=True)
    real = pc.equal(pc.strftime(parsed, format=_DATETIME_FORMAT), whole)
    fraction = pc.fill_null(_parse_float(pc.utf8_slice_codeunits(col, 19)), 0.0)  # ".66" -> 0.66
    return pc.if_else(real, pc.add(_numeric(parsed), fraction), pa.scalar(None, pa.float64()))


def _constant(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value), n)


def _not_finite(values) -> pa.Array:
    return pc.fill_null(pc.invert(pc.is_finite(values)), True)


def _assemble(cols: dict[str, object], checks: list[tuple[str, object]], n: int) -> pa.Table:
    """READER_SCHEMA table from columns (absent -> null) and (reason, bool mask) checks.

    ``checks`` are in priority order: a row gets the first reason whose mask is true.
    Empty id and event-type strings come out as null: a missing value, not an id "".
    """
    arrays = []
    for field in S.READER_SCHEMA:
        if field.name == S.INVALID_REASON:
            arrays.append(_first_reason(checks, n))
        elif field.name in (S.USER_ID, S.ITEM_ID, S.EVENT_TYPE):
            arrays.append(_empty_to_null(cols[field.name]))
        elif field.name in cols:
            arrays.append(pc.cast(cols[field.name], field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=S.READER_SCHEMA)


def _first_reason(checks: list[tuple[str, object]], n: int) -> pa.Array:
    reason = pa.nulls(n, pa.string())
    for name, mask in reversed(checks):  # later assignments win, so go from last to first
        reason = pc.if_else(mask, pa.scalar(name), reason)
    return reason


# ---------------------------------------------------------------- format converters


def _taobao(raw: pa.Table) -> pa.Table:
    user, item = _strings(raw["user"]), _strings(raw["item"])
    behaviour = pc.ascii_lower(_strings(raw["behavior"]))
    known = pa.array(list(TAOBAO_BEHAVIOURS))
    index = pc.index_in(behaviour, value_set=known)
    event = pc.if_else(
        pc.is_null(index), behaviour, pc.take(pa.array(list(TAOBAO_BEHAVIOURS.values())), index)
    )
    ts = _parse_float(_strings(raw["ts"]))
    cols = {S.USER_ID: user, S.ITEM_ID: item, S.EVENT_TYPE: event, S.TIMESTAMP: ts,
            S.CATEGORY_ID: _empty_to_null(_strings(raw["category"]))}
    checks = [(MISSING_USER_ID, _is_missing(user)), (MISSING_ITEM_ID, _is_missing(item)),
              (UNKNOWN_EVENT_TYPE, pc.is_null(index)), (BAD_TIMESTAMP, _not_finite(ts))]
    return _assemble(cols, checks, raw.num_rows)


def _yoochoose(raw: pa.Table) -> pa.Table:
    session, item = _strings(raw["SessionId"]), _strings(raw["ItemId"])
    ts = _parse_float(_strings(raw["Time"]))
    n = raw.num_rows
    cols = {S.USER_ID: session, S.ITEM_ID: item, S.EVENT_TYPE: _constant("click", n),
            S.TIMESTAMP: ts, S.SESSION_ID: _empty_to_null(session)}
    checks = [(MISSING_USER_ID, _is_missing(session)), (MISSING_ITEM_ID, _is_missing(item)),
              (BAD_TIMESTAMP, _not_finite(ts))]
    return _assemble(cols, checks, n)


def _diginetica(raw: pa.Table, categories: pa.Table | None) -> pa.Table:
    session, item = _strings(raw["sessionId"]), _strings(raw["itemId"])
    user = _strings(raw["userId"])
    anonymous = pc.or_(_is_missing(user), pc.equal(user, "NA"))
    session_user = pc.binary_join_element_wise(ANONYMOUS_USER_PREFIX, session, "")
    user = pc.if_else(anonymous, pc.if_else(_is_missing(session), "", session_user), user)
    day = pc.strptime(_strings(raw["eventdate"]), format="%Y-%m-%d", unit="s",
                      error_is_null=True)
    ts = pc.add(_numeric(day), pc.divide(_parse_float(_strings(raw["timeframe"])), 1000.0))
    n = raw.num_rows
    cols = {S.USER_ID: user, S.ITEM_ID: item, S.EVENT_TYPE: _constant("purchase", n),
            S.TIMESTAMP: ts, S.SESSION_ID: _empty_to_null(session)}
    if categories is not None:
        index = pc.index_in(item, value_set=categories["itemId"])
        cols[S.CATEGORY_ID] = pc.take(categories["categoryId"], index)
    checks = [(MISSING_USER_ID, _is_missing(user)), (MISSING_ITEM_ID, _is_missing(item)),
              (BAD_TIMESTAMP, _not_finite(ts))]
    return _assemble(cols, checks, n)


def _s3rec(raw: pa.Table) -> pa.Table:
    """One row per item of each line; a line without items gives one invalid row."""
    tokens = pc.split_pattern_regex(_strings(raw["line"]), r"\s+").combine_chunks()
    counts = pc.list_value_length(tokens).to_numpy() - 1  # items per line (first = user)
    rows_per_line = np.maximum(counts, 1)
    line = np.repeat(np.arange(len(counts)), rows_per_line)
    first_row = np.cumsum(rows_per_line) - rows_per_line
    position = np.arange(len(line)) - first_row[line]  # 0, 1, 2, ... within the line
    has_item = counts[line] > 0
    offsets = tokens.offsets.to_numpy()[:-1]
    token_index = np.where(has_item, offsets[line] + 1 + position, 0)
    values = tokens.values
    user = pc.take(values, pa.array(offsets[line]))
    item = pc.if_else(pa.array(has_item), pc.take(values, pa.array(token_index)),
                      pa.scalar(None, pa.string()))
    n = len(line)
    cols = {S.USER_ID: user, S.ITEM_ID: item, S.EVENT_TYPE: _constant("purchase", n),
            S.TIMESTAMP: pa.array(position.astype(np.float64))}
    checks = [(MISSING_USER_ID, _is_missing(user)), (MISSING_ITEM_ID, _is_missing(item))]
    return _assemble(cols, checks, n)


def _bestbuy(raw: pa.Table) -> pa.Table:
    user, item = _strings(raw["user"]), _strings(raw["sku"])
    ts = _datetime_seconds(_strings(raw["click_time"]))
    searched = _strings(raw["query_time"])
    session = pc.if_else(pc.or_(_is_missing(user), _is_missing(searched)),
                         pa.scalar(None, pa.string()),
                         pc.binary_join_element_wise(user, searched, "/"))
    n = raw.num_rows
    cols = {S.USER_ID: user, S.ITEM_ID: item, S.EVENT_TYPE: _constant("click", n),
            S.TIMESTAMP: ts, S.SESSION_ID: session,
            S.CATEGORY_ID: _empty_to_null(_strings(raw["category"])),
            S.QUERY: _empty_to_null(_strings(raw["query"]))}
    checks = [(MISSING_USER_ID, _is_missing(user)), (MISSING_ITEM_ID, _is_missing(item)),
              (BAD_TIMESTAMP, _not_finite(ts))]
    return _assemble(cols, checks, n)


@dataclass(frozen=True)
class _Lists:
    """One ``_``-joined list column of a JDsearch block, flattened."""

    values: pa.Array  # every element, row after row (an empty field holds one "", unused)
    starts: np.ndarray  # (rows,) index in ``values`` of each row's first element
    lengths: np.ndarray  # (rows,) elements per row; 0 for an empty field

    @staticmethod
    def split(col) -> _Lists:
        col = _strings(col)
        parts = pc.split_pattern(col, JDSEARCH_LIST_SEPARATOR)
        parts = parts.combine_chunks() if isinstance(parts, pa.ChunkedArray) else parts
        offsets = parts.offsets.to_numpy()
        empty = _is_missing(col).to_numpy(zero_copy_only=False)
        lengths = np.where(empty, 0, np.diff(offsets))
        return _Lists(pc.utf8_trim_whitespace(parts.values), offsets[:-1], lengths)

    def elements(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, position in the row) of every element, in order."""
        rows = np.repeat(np.arange(len(self.lengths)), self.lengths)
        firsts = np.cumsum(self.lengths) - self.lengths
        return rows, np.arange(len(rows)) - firsts[rows]

    def at(self, rows: np.ndarray, positions: np.ndarray) -> pa.Array:
        """Element ``positions[k]`` of row ``rows[k]``; null past the row's end."""
        inside = positions < self.lengths[rows]
        index = np.where(inside, self.starts[rows] + positions, 0)
        return pc.take(self.values, pa.array(index, pa.int64(), mask=~inside))

    def running_sum(self, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Sum of row ``rows[k]``'s numbers up to and including ``positions[k]``; NaN past
        the row's end or when one of those numbers does not parse."""
        numbers = _parse_float(self.values).to_numpy(zero_copy_only=False)
        good = np.isfinite(numbers)
        total = np.concatenate([[0.0], np.cumsum(np.where(good, numbers, 0.0))])
        bad = np.concatenate([[0], np.cumsum(~good)])
        inside = positions < self.lengths[rows]
        begin = self.starts[rows]
        end = np.where(inside, begin + positions + 1, begin)
        sums = total[end] - total[begin]
        return np.where(inside & (bad[end] == bad[begin]), sums, np.nan)


def _array(col) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _jd_query(col) -> pa.Array:
    """JDsearch term ids joined by spaces, as the catalogue writes names; ``-1`` -> null."""
    col = _strings(col)
    text = _empty_to_null(pc.replace_substring(col, JDSEARCH_TERM_SEPARATOR, " "))
    return _array(pc.if_else(pc.equal(col, JDSEARCH_ABSENT), pa.scalar(None, pa.string()), text))


def _lookup(codes: pa.Array, mapping: dict) -> tuple[pa.Array, pa.Array]:
    """(``mapping``'s event type of each code, or the code itself where it has none;
    whether it has none)."""
    index = pc.index_in(codes, value_set=pa.array(list(mapping)))
    names = pc.take(pa.array(list(mapping.values())), index)
    unknown = pc.is_null(index)
    return pc.if_else(unknown, pc.cast(codes, pa.string()), names), unknown


def _jd_order(h_rows, s_rows, h_pos, s_pos, n: int) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Rows of the events (history, engaged candidates, one for each row with neither),
    the rows with neither, and the order that puts each row's events together."""
    empty = np.setdiff1d(np.flatnonzero(np.bincount(h_rows, minlength=n) == 0), s_rows)
    rows = np.concatenate([h_rows, s_rows, empty])
    part = np.repeat([0, 1, 2], [len(h_rows), len(s_rows), len(empty)])
    positions = np.concatenate([h_pos, s_pos, np.zeros(len(empty), dtype=np.int64)])
    order = np.lexsort((positions, part, rows))  # last key is primary
    return rows[order], empty, pa.array(order)


def _jdsearch(raw: pa.Table, first_row: int) -> pa.Table:
    """One row per user: history entries, then the search's engaged candidates; a row
    with neither gives one itemless row (rows are never dropped)."""
    raw = {name: _array(raw[name]) for name in JDSEARCH_COLUMNS}
    n = len(raw["query"])
    lists = {name: _Lists.split(raw[name]) for name in JDSEARCH_COLUMNS[1:]}
    wids, times = lists["history_wid_list"], lists["history_time_list"]
    candidates, labels = lists["candidate_wid_list"], lists["candidate_label_list"]
    history = wids.lengths
    agree = ((lists["history_qry_list"].lengths == history)
             & (lists["history_type_list"].lengths == history) & (times.lengths == history + 1)
             & (candidates.lengths == labels.lengths))
    h_rows, h_pos = wids.elements()
    l_rows, l_pos = labels.elements()
    label = _parse_float(labels.at(l_rows, l_pos))
    engaged = pc.invert(pc.fill_null(pc.equal(label, 0.0), False)).to_numpy(zero_copy_only=False)
    s_rows, s_pos = l_rows[engaged], l_pos[engaged]
    rows, empty, order = _jd_order(h_rows, s_rows, h_pos, s_pos, n)

    def stacked(history_part, search_part, empty_part) -> pa.Array:
        return pc.take(pa.concat_arrays([history_part, search_part, empty_part]), order)

    h_type, h_unknown = _lookup(pc.ascii_upper(lists["history_type_list"].at(h_rows, h_pos)),
                                JDSEARCH_TYPES)
    s_type, s_unknown = _lookup(label.filter(pa.array(engaged)), JDSEARCH_LABELS)
    s_type = pc.if_else(s_unknown, labels.at(s_rows, s_pos), s_type)  # the raw label text
    nothing, no = pa.nulls(len(empty), pa.string()), pa.repeat(pa.scalar(False), len(empty))
    item = stacked(wids.at(h_rows, h_pos), candidates.at(s_rows, s_pos), nothing)
    item = pc.if_else(pc.equal(item, JDSEARCH_ABSENT), pa.scalar(None, pa.string()), item)
    ts = np.concatenate([times.running_sum(h_rows, h_pos),
                         times.running_sum(s_rows, history[s_rows]),  # the extra, last gap
                         np.full(len(empty), np.nan)])
    query = stacked(_jd_query(lists["history_qry_list"].at(h_rows, h_pos)),
                    pc.take(_jd_query(raw["query"]), pa.array(s_rows, pa.int64())), nothing)
    mismatched = pa.array(~agree[rows])
    line = pc.binary_join_element_wise(*raw.values(), "\t")  # kept for the rejects
    query = pc.if_else(mismatched, pc.take(line, pa.array(rows, pa.int64())), query)
    users = pa.array([f"{JDSEARCH_USER_PREFIX}{first_row + i}" for i in range(n)], pa.string())
    cols = {S.USER_ID: pc.take(users, pa.array(rows, pa.int64())), S.ITEM_ID: item,
            S.EVENT_TYPE: stacked(h_type, s_type, nothing),
            S.TIMESTAMP: pc.take(pa.array(ts, mask=np.isnan(ts)), order),  # unknown: null
            S.QUERY: query}
    checks = [(WRONG_COLUMN_COUNT, mismatched), (MISSING_ITEM_ID, _is_missing(item)),
              (UNKNOWN_EVENT_TYPE, stacked(h_unknown, s_unknown, no)),
              (BAD_TIMESTAMP, _not_finite(cols[S.TIMESTAMP]))]
    return _assemble(cols, checks, len(rows))


class _JdsearchFile:
    """The jdsearch converter of one file: it numbers the rows (the users) across blocks."""

    def __init__(self) -> None:
        self.rows_seen = 0

    def __call__(self, raw: pa.Table) -> pa.Table:
        first = self.rows_seen + 1
        self.rows_seen += raw.num_rows
        return _jdsearch(raw, first)


def _events(raw: pa.Table) -> pa.Table:
    absent = [c for c in S.REQUIRED_COLUMNS if c not in raw.column_names]
    if absent:
        raise ValueError(f"events input lacks required column(s) {absent}; "
                         f"it has {raw.column_names}")
    user, item = _strings(raw[S.USER_ID]), _strings(raw[S.ITEM_ID])
    event = pc.ascii_lower(_strings(raw[S.EVENT_TYPE]))
    ts = _numeric(raw[S.TIMESTAMP])
    cols = {S.USER_ID: user, S.ITEM_ID: item, S.EVENT_TYPE: event, S.TIMESTAMP: ts}
    for name in (S.SESSION_ID, S.CATEGORY_ID):
        if name in raw.column_names:
            cols[name] = _empty_to_null(_strings(raw[name]))
    checks = [(MISSING_USER_ID, _is_missing(user)), (MISSING_ITEM_ID, _is_missing(item)),
              (UNKNOWN_EVENT_TYPE, pc.invert(pc.is_in(event, pa.array(S.EVENT_TYPES)))),
              (BAD_TIMESTAMP, _not_finite(ts))]
    if S.PRICE in raw.column_names:
        price = _numeric(raw[S.PRICE])
        given = pc.invert(_is_missing(_strings(raw[S.PRICE])))
        cols[S.PRICE] = price
        checks.append((BAD_PRICE, pc.and_(given, _not_finite(price))))
    if S.QUERY in raw.column_names:
        query = raw[S.QUERY]
        query = query if pa.types.is_string(query.type) else pc.cast(query, pa.string())
        cols[S.QUERY] = pc.if_else(pc.equal(query, ""), pa.scalar(None, pa.string()), query)
    return _assemble(cols, checks, raw.num_rows)


def _load_diginetica_categories(data_file: str) -> pa.Table | None:
    path = os.path.join(os.path.dirname(data_file), DIGINETICA_CATEGORIES_FILE)
    if not os.path.isfile(path):
        return None
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter=";", quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={"itemId": pa.string(), "categoryId": pa.string()},
            include_columns=["itemId", "categoryId"],
        ),
    )


# ---------------------------------------------------------------- CSV streaming

SNIFF_BYTES = 1 << 16
_TEXT_BYTES = bytes([9, 10, 11, 12, 13, 27]) + bytes(range(32, 127)) + bytes(range(128, 256))
_MAX_CONTROL_SHARE = 0.1  # text has next to none; invalid UTF-8 alone is bad_encoding, per row
_MAGIC = ((b"PAR1", "Parquet data (read as Parquet only under a .parquet or .pq name)"),
          (b"\x1f\x8b", "gzip-compressed data without a .gz name"),
          (b"PK\x03\x04", "a zip archive"))


def _not_text_error(path: str, fmt: str, what: str) -> ValueError:
    return ValueError(f"{path}: {what}, not {fmt} input; the {fmt} format reads "
                      f"{_EXPECTED[fmt]}")


def _sniff(path: str, fmt: str) -> tuple[bytes, bool]:
    """The file's first SNIFF_BYTES (decompressed for a ``.gz`` name) and whether that is
    the whole file; ValueError naming the file and the expected format when it is binary
    (Parquet, gzip, zip, NUL bytes, many control characters) rather than text."""
    try:
        with pa.input_stream(path) as stream:  # decompresses by the name, as the reader does
            head = stream.read(SNIFF_BYTES + 1)
    except (pa.ArrowInvalid, OSError) as err:
        raise _not_text_error(path, fmt, f"unreadable as {os.path.basename(path)!r} ({err})") from None
    head, whole = head[:SNIFF_BYTES], len(head) <= SNIFF_BYTES
    what = next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
    if what is None and b"\x00" in head:
        what = "binary data (NUL bytes)"
    controls = len(head.translate(None, _TEXT_BYTES))
    if what is None and head and controls > _MAX_CONTROL_SHARE * len(head):
        what = f"binary data ({controls} control bytes in the first {len(head)})"
    if what is not None:
        raise _not_text_error(path, fmt, what)
    return head, whole



def _read_header(path: str) -> str | None:
    """The first line of a (possibly compressed) text file, or None when it is empty."""
    head = b""
    with _Utf8Repair(path) as stream:
        while b"\n" not in head:
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            head += chunk
    if not head.strip():
        return None
    return head.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")


def _header_columns(path: str, fmt: str, layout: _Layout) -> tuple[str, ...]:
    header = _read_header(path) or ""
    if layout.quoting:  # the generic CSV: names may be quoted
        names = tuple(n.strip().strip('"') for n in header.split(layout.delimiter))
        return names
    names = tuple(n.strip() for n in header.split(layout.delimiter))
    if names != layout.columns:
        raise ValueError(f"{path}: not a {fmt} file: header {list(names)}, "
                         f"expected {list(layout.columns)}")
    return names


class _Utf8Repair(io.RawIOBase):
    """A byte stream with invalid UTF-8 replaced by U+FFFD.

    pyarrow's CSV reader fails a whole file on one invalid byte (even inside its handler
    for wrong-column-count lines), so bytes are repaired before it sees them; the rows
    that held them are marked ``bad_encoding`` afterwards. ASCII chunks pass untouched.
    """

    def __init__(self, path: str):
        self._source = pa.input_stream(path)  # decompresses .gz by its name
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = memoryview(b"")
        self.repaired = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = self._source.read(1 << 20)
            if not chunk:
                tail = self._decoder.decode(b"", final=True).encode()
                if not tail:
                    return 0
                self.repaired, self._pending = True, memoryview(tail)
            elif chunk.isascii() and not self._decoder.getstate()[0]:
                self._pending = memoryview(chunk)
            else:
                text = self._decoder.decode(chunk)
                self.repaired = self.repaired or "\ufffd" in text
                self._pending = memoryview(text.encode())
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._source.close()
        super().close()


def _mark_bad_encoding(table: pa.Table) -> pa.Table:
    """Rows holding a repaired (U+FFFD) character get ``bad_encoding`` unless already worse."""
    hit = pa.repeat(pa.scalar(False), table.num_rows)
    for name in (S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.SESSION_ID, S.CATEGORY_ID, S.QUERY):
        hit = pc.or_(hit, pc.fill_null(pc.match_substring(table[name], "\ufffd"), False))
    reason = table[S.INVALID_REASON]
    keep = pc.equal(pc.fill_null(reason, ""), WRONG_COLUMN_COUNT)
    marked = pc.if_else(pc.and_(hit, pc.invert(keep)), pa.scalar(BAD_ENCODING), reason)
    return table.set_column(table.schema.get_field_index(S.INVALID_REASON),
                            S.INVALID_REASON, marked)


def _iter_csv_blocks(
    source: _Utf8Repair, columns: tuple[str, ...], skip_rows: int, layout: _Layout,
    block_size: int,
) -> Iterator[tuple[pa.Table, list[str]]]:
    """(block of string columns, raw lines with a wrong column count) pairs, file order.

    pyarrow hands every line with the wrong number of fields to ``keep_bad_line`` instead
    of failing; those lines come out beside the block that was being read, so none is lost.
    Parsing is single-threaded: a Ray task has one CPU anyway, and only then does pyarrow
    number the bad lines, which keeps their order (and so the output) deterministic.
    """
    bad_lines: list[tuple[int, str]] = []

    def keep_bad_line(row) -> str:
        bad_lines.append((row.number or 0, row.text))
        return "skip"

    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=list(columns), skip_rows=skip_rows,
                                       block_size=block_size, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=layout.delimiter,
                                         quote_char='"' if layout.quoting else False,
                                         invalid_row_handler=keep_bad_line),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                             strings_can_be_null=False),
    )
    for batch in reader:
        taken = [text for _, text in sorted(bad_lines)]
        bad_lines.clear()
        yield pa.Table.from_batches([batch]), taken
    if bad_lines:
        empty = pa.table({c: pa.array([], pa.string()) for c in columns})
        yield empty, [text for _, text in sorted(bad_lines)]


def _bad_lines_table(lines: list[str], columns: tuple[str, ...], layout: _Layout,
                     convert: Converter) -> pa.Table:
    """Best-effort parse of wrong-column-count lines, marked invalid, raw text in ``query``."""
    fields = [line.split(layout.delimiter) for line in lines]
    raw = pa.table({
        name: pa.array([(f[i] if i < len(f) else "") for f in fields], pa.string())
        for i, name in enumerate(columns)
    })
    table, repeats = _convert_lines(raw, layout, convert)
    reason = _constant(WRONG_COLUMN_COUNT, table.num_rows)
    query = pa.array(np.repeat(np.array(lines, dtype=object), repeats), pa.string())
    table = table.set_column(table.schema.get_field_index(S.QUERY), S.QUERY, query)
    return table.set_column(table.schema.get_field_index(S.INVALID_REASON),
                            S.INVALID_REASON, reason)


def _convert_lines(raw: pa.Table, layout: _Layout, convert: Converter
                   ) -> tuple[pa.Table, np.ndarray]:
    """Converted lines and the rows each gave: a format that expands a line into several
    rows converts (the few) bad lines one at a time, to map each row back to its line."""
    if not layout.expands:
        return convert(raw), np.ones(raw.num_rows, dtype=np.int64)
    parts = [convert(raw.slice(i, 1)) for i in range(raw.num_rows)]
    return pa.concat_tables(parts), np.array([p.num_rows for p in parts], dtype=np.int64)


def _iter_csv_file(path: str, fmt: str, batch_rows: int) -> Iterator[pa.Table]:
    layout = _layout(fmt)
    head, whole = _sniff(path, fmt)
    if _read_header(path) is None:  # nothing but blank lines (pyarrow would refuse it)
        return
    columns, skip_rows = layout.columns, 0
    if layout.has_header:
        columns, skip_rows = _header_columns(path, fmt, layout), 1
        if whole and not head.partition(b"\n")[2].strip():  # the header alone: no rows
            return
    convert = _converter(fmt, path)
    # ~64 bytes per line keeps a block near batch_rows rows for these formats.
    block_size = int(min(max(batch_rows * 64, 1 << 16), 1 << 28))
    with _Utf8Repair(path) as source:
        for block, bad in _iter_csv_blocks(source, columns, skip_rows, layout, block_size):
            tables = [convert(block)] if block.num_rows else []
            if bad:
                tables.append(_bad_lines_table(bad, columns, layout, convert))
            for table in tables:
                yield _mark_bad_encoding(table) if source.repaired else table


def _converter(fmt: str, path: str) -> Converter:
    if fmt == "diginetica":
        return partial(_diginetica, categories=_load_diginetica_categories(path))
    if fmt == "jdsearch":
        return _JdsearchFile()
    return {"taobao": _taobao, "yoochoose": _yoochoose, "s3rec": _s3rec, "bestbuy": _bestbuy,
            "events": _events}[fmt]


# ---------------------------------------------------------------- public API


def _iter_parquet_events(path: str, batch_rows: int) -> Iterator[pa.Table]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise _not_text_error(path, "events", f"unreadable as Parquet ({err})") from None
    wanted = set(S.REQUIRED_COLUMNS) | set(S.OPTIONAL_COLUMNS)
    columns = [name for name in parquet.schema_arrow.names if name in wanted]
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        yield _events(pa.Table.from_batches([batch]))


def _rebatch(tables: Iterable[pa.Table], batch_rows: int) -> Iterator[pa.Table]:
    """Regroup tables into ones of exactly ``batch_rows`` rows (the last may be shorter)."""
    pending: list[pa.Table] = []
    pending_rows = 0
    for table in tables:
        pending.append(table)
        pending_rows += table.num_rows
        while pending_rows >= batch_rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, batch_rows)
            pending, pending_rows = [merged.slice(batch_rows)], pending_rows - batch_rows
    if pending_rows:
        yield pa.concat_tables(pending)


def iter_file_batches(path: str, fmt: str, batch_rows: int = 1_000_000) -> Iterator[pa.Table]:
    """One data file -> READER_SCHEMA tables of ``batch_rows`` rows (the last may be shorter).

    An empty file yields nothing.
    """
    _layout(fmt)
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path!r} does not exist")
    if fmt == "events" and path.endswith((".parquet", ".pq")):
        tables = _iter_parquet_events(path, batch_rows)
    else:
        tables = _iter_csv_file(path, fmt, batch_rows)
    try:
        yield from _rebatch(tables, batch_rows)
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from err


def read_events(path: str, fmt: str) -> pa.Table:
    """Every data file under ``path`` read into one table (small data and tests)."""
    tables = [t for f in list_input_files(path, fmt) for t in iter_file_batches(f, fmt)]
    return pa.concat_tables(tables) if tables else S.empty_reader_table()
