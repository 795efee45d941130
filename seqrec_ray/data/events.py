"""Per-user event ordering: user hash buckets, chronological sort, exact-duplicate removal
and sessionization. Pure pyarrow/numpy on event tables (EVENT_SCHEMA columns + ORDER).

Every function here sees all events of the users it is given (one hash bucket holds every
event of its users), so deduplication and sessions are global per user.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray import schema as S

# int64 input position (file index << 40 | row in file): ties in time keep input order.
ORDER = "_order"
SESSION_INDEX = "_session"  # int32, the event's session within its user, from 0
USER_CODE = "_user"  # int64 per-table user code added by sort_events (saves re-hashing ids)
ROW_BITS = 40

# Exact duplicates agree on every event column.
DEDUPE_KEYS = tuple(f.name for f in S.EVENT_SCHEMA)


def order_keys(file_index: int, first_row: int, n: int) -> pa.Array:
    return pa.array((np.int64(file_index) << ROW_BITS) + first_row + np.arange(n, dtype=np.int64))


def flat(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array (chunked columns from concatenated tables have many chunks)."""
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


_P = np.uint64(0x100000001B3)  # the FNV prime


def _string_hash(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Deterministic 64-bit hash of each string (a polynomial over its UTF-8 bytes).

    Python's ``hash`` is salted per process, so bucketing must not use it: every reader
    task has to send a user to the same bucket.
    """
    col = flat(pc.cast(col, pa.large_string()))
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int64)[col.offset: col.offset + len(col) + 1]
    lengths = np.diff(offsets)
    out = np.zeros(len(col), dtype=np.uint64)
    if len(col) == 0 or lengths.sum() == 0:
        return out
    data = np.frombuffer(col.buffers()[2], dtype=np.uint8)
    # Byte k of a string is weighted by P**k (mod 2**64); segment sums give the hash.
    starts = offsets[:-1] - offsets[0]
    k = np.arange(offsets[-1] - offsets[0], dtype=np.int64) - np.repeat(starts, lengths)
    powers = np.ones(int(lengths.max()), dtype=np.uint64)
    powers[1:] = np.cumprod(np.full(len(powers) - 1, _P, dtype=np.uint64))  # wraps mod 2**64
    terms = (data[offsets[0]: offsets[-1]].astype(np.uint64) + np.uint64(1)) * powers[k]
    nonempty = lengths > 0
    out[nonempty] = np.add.reduceat(terms, starts[nonempty])
    out ^= out >> np.uint64(29)  # mix high bits into the low ones the modulo uses
    out *= np.uint64(0xBF58476D1CE4E5B9)
    out ^= out >> np.uint64(32)
    return out


def user_buckets(users: pa.Array | pa.ChunkedArray, num_buckets: int) -> np.ndarray:
    """Bucket of each user id in [0, num_buckets), the same in every process."""
    encoded = pc.dictionary_encode(flat(users))  # users repeat: hash each one once
    buckets = (_string_hash(encoded.dictionary) % np.uint64(num_buckets)).astype(np.int32)
    return buckets[encoded.indices.to_numpy(zero_copy_only=False)]


def user_codes(users) -> np.ndarray:
    """Dense int codes of user ids (first-appearance order)."""
    codes = pc.dictionary_encode(flat(users)).indices
    return codes.to_numpy(zero_copy_only=False).astype(np.int64)


def sort_events(table: pa.Table) -> pa.Table:
    """Group each user's events together, chronological, ties in input order."""
    if table.num_rows == 0:
        return table
    ts = table[S.TIMESTAMP].to_numpy()
    order = table[ORDER].to_numpy()
    codes = user_codes(table[S.USER_ID])
    index = np.lexsort((order, ts, codes))  # last key is primary
    if USER_CODE in table.column_names:
        table = table.drop_columns([USER_CODE])
    return table.append_column(USER_CODE, pa.array(codes)).take(pa.array(index))


def _sorted_user_codes(sorted_table: pa.Table) -> np.ndarray:
    if USER_CODE in sorted_table.column_names:
        return sorted_table[USER_CODE].to_numpy()
    return user_codes(sorted_table[S.USER_ID])


def user_starts(sorted_table: pa.Table) -> np.ndarray:
    """bool per row: the first event of its user (table sorted by ``sort_events``)."""
    first = np.ones(sorted_table.num_rows, dtype=bool)
    if sorted_table.num_rows > 1:
        codes = _sorted_user_codes(sorted_table)
        first[1:] = codes[1:] != codes[:-1]
    return first


def drop_duplicates(sorted_table: pa.Table) -> tuple[pa.Table, int]:
    """Remove exact duplicate events, keeping the first in input order.

    Duplicates share user and timestamp, so after sorting they lie in one run of equal
    (user, timestamp); only rows in runs longer than one need the full-row comparison.
    """
    n = sorted_table.num_rows
    if n < 2:
        return sorted_table, 0
    codes = _sorted_user_codes(sorted_table)
    ts = sorted_table[S.TIMESTAMP].to_numpy()
    tied = (codes[1:] == codes[:-1]) & (ts[1:] == ts[:-1])
    candidate = np.zeros(n, dtype=bool)
    candidate[1:] |= tied
    candidate[:-1] |= tied
    if not candidate.any():
        return sorted_table, 0
    positions = np.flatnonzero(candidate)
    sub = sorted_table.select(list(DEDUPE_KEYS)).take(pa.array(positions))
    sub = sub.append_column("_pos", pa.array(positions))
    firsts = sub.group_by(list(DEDUPE_KEYS), use_threads=False).aggregate([("_pos", "min")])
    keep = ~candidate
    keep[firsts["_pos_min"].to_numpy()] = True
    return sorted_table.filter(pa.array(keep)), int(n - keep.sum())


def sessionize(sorted_table: pa.Table, gap_seconds: float) -> pa.Table:
    """Add SESSION_INDEX and fill missing ``session_id`` as ``<user>:<index>``.

    A new session starts at a user's first event, where the source session id changes, or
    - between two events without a source session id - after more than ``gap_seconds``
    of inactivity. Source session ids are kept as they are.
    """
    n = sorted_table.num_rows
    if n == 0:
        return sorted_table.append_column(SESSION_INDEX, pa.array([], pa.int32()))
    first = user_starts(sorted_table)
    sid = sorted_table[S.SESSION_ID]
    sid_codes = pc.fill_null(pc.dictionary_encode(flat(sid)).indices, -1)
    sid_codes = sid_codes.to_numpy(zero_copy_only=False).astype(np.int64)
    ts = sorted_table[S.TIMESTAMP].to_numpy()
    new = first.copy()
    new[1:] |= sid_codes[1:] != sid_codes[:-1]
    new[1:] |= (sid_codes[1:] == -1) & (np.diff(ts) > gap_seconds)
    running = np.cumsum(new) - 1
    group = np.cumsum(first) - 1
    index = (running - running[first][group]).astype(np.int32)
    generated = pc.binary_join_element_wise(
        sorted_table[S.USER_ID], pc.cast(pa.array(index), pa.string()), ":")
    filled = pc.coalesce(sid, generated)
    table = sorted_table.set_column(sorted_table.schema.get_field_index(S.SESSION_ID),
                                    pa.field(S.SESSION_ID, pa.string()), filled)
    return table.append_column(SESSION_INDEX, pa.array(index))
