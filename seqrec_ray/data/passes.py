"""The three per-task passes of featurization: plain functions of paths (no Ray), so a
single process can run them too. ``pipeline.py`` fans them out over Ray Data.

1. ``read_validate_bucket``: one input file -> rejects Parquet + kept events split into
   user hash buckets (``WORK/buckets/NNNN/``); returns counts.
2. ``sequence_bucket``: one bucket (every event of its users) -> sort, dedupe, sessionize,
   profiles (final), raw-id sequences, recent history and (item, category) counts.
3. ``encode_bucket``: one bucket's raw sequences + the vocab -> final sequences.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqrec_ray import schema as S
from seqrec_ray.data import events as E
from seqrec_ray.data import readers
from seqrec_ray.data import vocab as V
from seqrec_ray.data.forget import drop_users
from seqrec_ray.data.profiles import ProfileConfig, build_profiles
from seqrec_ray.data.search_index import event_query_hashes, query_pairs
from seqrec_ray.data.sequences import (
    COLD_REMOVED,
    N_EVENTS,
    SequenceConfig,
    build_raw_sequences,
    encode_sequences,
)
from seqrec_ray.data.validate import ValidateConfig, count_reasons, validate

BUCKETS, SEQRAW, COUNTS, HISTORY, QUERIES = "buckets", "seqraw", "counts", "history", "queries"
QUERY_TEXTS = "query_texts"
TEMP_COMPRESSION = "lz4"  # intermediate files: fast beats small


@dataclass(frozen=True)
class Layout:
    """Where one run's files go."""

    output: str
    work: str

    def bucket_dir(self, bucket: int) -> str:
        return os.path.join(self.work, BUCKETS, f"{bucket:04d}")

    def work_file(self, kind: str, bucket: int) -> str:
        return os.path.join(self.work, kind, f"part-{bucket:04d}.parquet")

    def output_file(self, kind: str, name: str) -> str:
        return os.path.join(self.output, kind, f"part-{name}.parquet")


def _write(table: pa.Table, path: str, compression: str = "snappy") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, compression=compression)


def _write_buckets(kept: pa.Table, layout: Layout, num_buckets: int, name: str) -> None:
    bucket = E.user_buckets(kept[S.USER_ID], num_buckets)
    order = pa.array(bucket.argsort(kind="stable"))
    kept, bucket = kept.take(order), bucket[order.to_numpy()]
    bounds = bucket.searchsorted(range(num_buckets + 1))
    for b in range(num_buckets):
        if bounds[b + 1] > bounds[b]:
            part = kept.slice(bounds[b], bounds[b + 1] - bounds[b])
            _write(part, os.path.join(layout.bucket_dir(b), f"part-{name}.parquet"),
                   TEMP_COMPRESSION)


def _merge_min_max(stats: dict, kept: pa.Table) -> None:
    low, high = (v.as_py() for v in pc.min_max(kept[S.TIMESTAMP]).values())
    stats["ts_min"] = low if stats["ts_min"] is None else min(stats["ts_min"], low)
    stats["ts_max"] = high if stats["ts_max"] is None else max(stats["ts_max"], high)


def read_validate_bucket(path: str, file_index: int, fmt: str, layout: Layout,
                         num_buckets: int, config: ValidateConfig, batch_rows: int,
                         forget: pa.Array | None = None) -> dict:
    """Pass 1 for one input file; returns its counts. Rows of the users in ``forget`` (a
    deletion list, ``forget.value_set``) are dropped first, rejects included: only counted."""
    stats = {"rows_read": 0, "rows_rejected": 0, "rows_kept": 0, "rows_forgotten": 0,
             "rejected_by_reason": {}, "ts_min": None, "ts_max": None}
    for j, batch in enumerate(readers.iter_file_batches(path, fmt, batch_rows)):
        name = f"{file_index:05d}-{j:05d}"
        order = E.order_keys(file_index, stats["rows_read"], batch.num_rows)
        stats["rows_read"] += batch.num_rows
        batch, forgotten = drop_users(batch.append_column(E.ORDER, order), forget)
        stats["rows_forgotten"] += forgotten
        kept, rejects = validate(batch, config)
        if rejects.num_rows:
            _write(rejects.drop_columns([E.ORDER]), layout.output_file("rejects", name))
            stats["rows_rejected"] += rejects.num_rows
            for reason, n in count_reasons(rejects).items():
                stats["rejected_by_reason"][reason] = stats["rejected_by_reason"].get(reason, 0) + n
        if kept.num_rows:
            stats["rows_kept"] += kept.num_rows
            _merge_min_max(stats, kept)
            _write_buckets(kept, layout, num_buckets, name)
    return stats


def _recent(events: pa.Table, limit: int) -> pa.Table:
    """Each user's ``limit`` most recent events (sorted input), event columns only."""
    first = E.user_starts(events)
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(first))
    from_end = np.repeat(ends, np.diff(np.append(starts, len(first)))) - 1 - np.arange(len(first))
    return events.filter(pa.array(from_end < limit)).select([f.name for f in S.EVENT_SCHEMA])


def sequence_bucket(bucket: int, layout: Layout, sequence: SequenceConfig,
                    profile: ProfileConfig, reference_time: float,
                    history_limit: int | None) -> dict:
    """Pass 2 for one bucket; returns its counts."""
    directory = layout.bucket_dir(bucket)
    if not os.path.isdir(directory):
        return {"rows_in": 0, "rows_duplicate": 0, "users": 0, "sessions": 0}
    events = pq.read_table(directory)
    rows_in = events.num_rows
    events, duplicates = E.drop_duplicates(E.sort_events(events))
    events = E.sessionize(events, sequence.session_gap_seconds)
    profiles = build_profiles(events, reference_time, profile)
    _write(profiles, layout.output_file("profiles", f"{bucket:04d}"))
    hashes, query_texts = event_query_hashes(events)
    _write(build_raw_sequences(events, sequence, hashes), layout.work_file(SEQRAW, bucket),
           TEMP_COMPRESSION)
    if query_texts.num_rows:
        _write(query_texts, layout.work_file(QUERY_TEXTS, bucket), TEMP_COMPRESSION)
    _write(V.count_pairs(events), layout.work_file(COUNTS, bucket), TEMP_COMPRESSION)
    holdout_last, before = sequence.split.held_out()
    pairs = query_pairs(events, holdout_last, before)
    if pairs.num_rows:
        _write(pairs, layout.work_file(QUERIES, bucket), TEMP_COMPRESSION)
    if history_limit is not None:
        _write(_recent(events, history_limit), layout.work_file(HISTORY, bucket),
               TEMP_COMPRESSION)
    return {"rows_in": rows_in, "rows_duplicate": duplicates, "users": profiles.num_rows,
            "sessions": int(pc.sum(profiles["n_sessions"]).as_py())}


def encode_bucket(bucket: int, layout: Layout) -> dict:
    """Pass 3 for one bucket: needs ``OUTPUT/vocab`` written; returns its counts."""
    path = layout.work_file(SEQRAW, bucket)
    if not os.path.isfile(path):
        return {"users": 0, "events": 0, "events_in_sequences": 0, "cold_removed": 0}
    raw = pq.read_table(path)
    items = pq.read_table(os.path.join(layout.output, V.VOCAB_DIR, V.ITEMS_FILE))
    categories = pq.read_table(os.path.join(layout.output, V.VOCAB_DIR, V.CATEGORIES_FILE))
    sequences = encode_sequences(raw, items, categories)
    _write(sequences, layout.output_file("sequences", f"{bucket:04d}"))
    return {"users": sequences.num_rows, "events": int(pc.sum(raw[N_EVENTS]).as_py()),
            "cold_removed": int(pc.sum(raw[COLD_REMOVED]).as_py() or 0),
            "events_in_sequences": int(pc.sum(pc.list_value_length(sequences["items"])).as_py())}
