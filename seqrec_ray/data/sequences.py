"""Per-user chronological sequences with time features (docs/contracts.md §2).

``build_raw_sequences`` turns one bucket of sorted, deduplicated, sessionized events into
one row per user that still holds raw item/category ids (the vocabulary is not known until
every bucket is counted); ``encode_sequences`` maps those ids to indices afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray import schema as S
from seqrec_ray.data import vocab as V
from seqrec_ray.data.events import SESSION_INDEX, user_starts
from seqrec_ray.data.splits import TRAIN, SplitConfig, assign_splits, cold_item_mask

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = S.SECONDS_PER_DAY
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)

RAW_ITEMS = "item_ids"
RAW_CATEGORIES = "category_ids"
N_EVENTS = "n_events"
COLD_REMOVED = "n_cold_removed"  # training events of cold items left out (cold-item protocol)
# Lists carried through encoding unchanged, with their element types.
TIME_COLUMNS = {"event_types": pa.int8(), "gap_buckets": pa.int8(), "hours": pa.int8(),
                "weekdays": pa.int8(), "timestamps": pa.float64(), "splits": pa.int8(),
                "sessions": pa.int32(), "queries": pa.int64()}
SEQUENCE_SCHEMA = pa.schema(
    [(S.USER_ID, pa.string()), ("items", pa.list_(pa.int64())),
     ("event_types", pa.list_(pa.int8())), ("categories", pa.list_(pa.int64()))]
    + [(name, pa.list_(t)) for name, t in TIME_COLUMNS.items() if name != "event_types"])


@dataclass(frozen=True)
class SequenceConfig:
    max_seq_len: int = 200
    session_gap_seconds: float = 1800.0
    split: SplitConfig = SplitConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.max_seq_len, int) or self.max_seq_len < 1:
            raise ValueError(f"max_seq_len must be an integer >= 1, got {self.max_seq_len!r}")
        if not self.session_gap_seconds > 0:
            raise ValueError(f"session_gap_seconds must be > 0, got {self.session_gap_seconds!r}")
        if not isinstance(self.split, SplitConfig):
            raise TypeError(f"split must be a SplitConfig, got {type(self.split).__name__}")


def gap_buckets(ts: np.ndarray, first: np.ndarray) -> np.ndarray:
    """1 for a user's first event, else 2 + floor(log2(1 + gap seconds)), capped at 31."""
    gaps = np.zeros(len(ts))
    gaps[1:] = np.diff(ts)  # across users too: those positions are first events, reset below
    buckets = S.gap_bucket_of(gaps).astype(np.int8)
    buckets[first] = S.FIRST_EVENT_BUCKET
    return buckets


def hours_of_day(ts: np.ndarray) -> np.ndarray:
    return (np.floor(ts / SECONDS_PER_HOUR) % 24).astype(np.int8)


def weekdays(ts: np.ndarray) -> np.ndarray:
    return ((np.floor(ts / SECONDS_PER_DAY) + EPOCH_WEEKDAY) % 7).astype(np.int8)


def event_type_indices(event_types) -> np.ndarray:
    position = pc.index_in(event_types, value_set=pa.array(S.EVENT_TYPES))
    return (pc.fill_null(position, -1).to_numpy(zero_copy_only=False) + 1).astype(np.int8)


def _user_layout(first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user group per event, start row per user, events per user)."""
    starts = np.flatnonzero(first)
    lengths = np.diff(np.append(starts, len(first)))
    return np.cumsum(first) - 1, starts, lengths


def _lists(values: pa.Array, offsets: np.ndarray) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def build_raw_sequences(events: pa.Table, config: SequenceConfig,
                        query_hashes: np.ndarray | None = None) -> pa.Table:
    """Sorted, deduplicated, sessionized events -> one row per user (raw ids).

    ``query_hashes`` ((n,) int64, ``search_index.event_query_hashes``): the query that led
    to each event, kept as the ``queries`` list (0 = none; all 0 when not given).

    Splits are assigned on the full history; under the cold-item protocol the training
    events of cold items are then left out (counted in ``n_cold_removed``); each list keeps
    the last ``max_seq_len`` remaining events; ``n_events`` counts them before truncation.
    """
    first = user_starts(events)
    group, starts, lengths = _user_layout(first)
    ts = events[S.TIMESTAMP].to_numpy()
    from_end = (starts + lengths)[group] - 1 - np.arange(len(ts))
    columns = {
        "event_types": event_type_indices(events[S.EVENT_TYPE]),
        "gap_buckets": gap_buckets(ts, first),
        "hours": hours_of_day(ts),
        "weekdays": weekdays(ts),
        "timestamps": ts,
        "splits": assign_splits(ts, from_end, lengths[group], config.split),
        "sessions": events[SESSION_INDEX].to_numpy().astype(np.int32),
        "queries": np.zeros(len(ts), dtype=np.int64) if query_hashes is None else query_hashes,
    }
    present = ~((columns["splits"] == TRAIN)
                & cold_item_mask(events[S.ITEM_ID], config.split.cold_items, config.split.cold_seed))
    remaining = np.bincount(group[present], minlength=len(starts))
    rank_from_end = np.zeros(len(ts), dtype=np.int64)  # among a user's remaining events
    rank_from_end[present] = _rank_from_end(group[present], remaining)
    keep = present & (rank_from_end < config.max_seq_len)
    kept_lengths = np.minimum(remaining, config.max_seq_len)
    offsets = np.concatenate([[0], np.cumsum(kept_lengths)])
    mask = pa.array(keep)
    out = {S.USER_ID: events[S.USER_ID].combine_chunks().take(pa.array(starts)),
           RAW_ITEMS: _lists(events[S.ITEM_ID].combine_chunks().filter(mask), offsets),
           RAW_CATEGORIES: _lists(events[S.CATEGORY_ID].combine_chunks().filter(mask), offsets)}
    for name, dtype in TIME_COLUMNS.items():
        out[name] = _lists(pa.array(columns[name][keep], dtype), offsets)
    out[N_EVENTS] = pa.array(remaining.astype(np.int64))
    out[COLD_REMOVED] = pa.array((lengths - remaining).astype(np.int64))
    return pa.table(out)


def _rank_from_end(group: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For events sorted by user (``group``), 0 for each user's last one, 1 before it..."""
    ends = np.cumsum(lengths)
    return ends[group] - 1 - np.arange(len(group))


def encode_sequences(raw: pa.Table, items: pa.Table, categories: pa.Table) -> pa.Table:
    """Raw-id sequences -> SEQUENCE_SCHEMA, using the vocab tables.

    An event without a category takes its item's category from the item vocab.
    """
    item_lists = raw[RAW_ITEMS].combine_chunks()
    item_index = V.encode(item_lists.flatten(), items)
    event_category = V.encode(raw[RAW_CATEGORIES].combine_chunks().flatten(), categories)
    item_category = pc.take(items["category_index"].combine_chunks(), item_index)
    has_category = pc.is_valid(raw[RAW_CATEGORIES].combine_chunks().flatten())
    category_index = pc.if_else(has_category, event_category, item_category)
    offsets = pc.subtract(item_lists.offsets, item_lists.offsets[0])  # slices start above 0
    out = {S.USER_ID: raw[S.USER_ID],
           "items": pa.ListArray.from_arrays(offsets, item_index),
           "categories": pa.ListArray.from_arrays(offsets, category_index)}
    for name in TIME_COLUMNS:
        out[name] = raw[name]
    return pa.table({f.name: out[f.name] for f in SEQUENCE_SCHEMA}, schema=SEQUENCE_SCHEMA)
