"""Sequence rows (docs/contracts.md §2) -> training windows and evaluation examples.

Pure numpy/pyarrow, vectorised over all users at once, so the functions run as they are
inside Ray Data ``map_batches`` and in the in-process loop.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray.schema import SEQUENCE_FEATURES

from .targets import next_purchase_flat

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
QUERIES = "queries"  # per event: the hash of the query that led to it (models/query.py)


def training_windows(sequences: pa.Table, max_len: int, behaviour_targets: bool = False) -> pa.Table:
    """Each user's train events (splits == 0) cut into windows of at most max_len + 1 events.

    One row per window: the inputs (the window minus its last event) LEFT-padded to
    ``max_len`` and ``targets`` (the next event's item at each input position, 0 = no
    loss). Windows tile the sequence from its end without overlap, so every train event
    after the first is a target exactly once per pass.

    Sequences with a ``queries`` column (the query-aware model's data) add
    ``target_queries`` (the hash of the query that led to each target, 0 = none) and, in
    each user's oldest window, ``first_target`` / ``first_query``: the user's first event
    and its query when a query led to it (else 0), a search made with no history at all.
    A user whose only event a query led to gets a window with no inputs for it.

    ``behaviour_targets`` (the multi-behaviour heads, models/heads.py) adds, per input
    position, ``purchase_targets`` (the item of the user's next purchase after it among the
    train events, whatever events come between; 0 = none) and ``type_targets`` (the next
    event's type).
    """
    _check_max_len(max_len)
    flat, counts = _flatten(sequences, keep_split=0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_targets = np.maximum(counts - 1, 0)
    n_windows = -(-n_targets // max_len)  # ceil
    if QUERIES in flat:
        searched_first = np.zeros(len(counts), dtype=bool)
        searched_first[counts > 0] = flat[QUERIES][starts[counts > 0]] != 0
        n_windows = n_windows + ((counts == 1) & searched_first)
    user = np.repeat(np.arange(len(counts)), n_windows)  # (W,)
    j = _rank_within(n_windows)  # 0 = the window at the end of the user's sequence
    end = counts[user] - 1 - j * max_len  # last target index within the user
    length = np.minimum(max_len, end)  # inputs in this window
    first_input = starts[user] + end - length  # flat index of the window's first input
    # Emit windows oldest first within each user (j runs from the end).
    order = np.lexsort((-j, user))
    length, first_input, user = length[order], first_input[order], user[order]
    row = np.repeat(np.arange(len(length)), length)
    offset = _rank_within(length)
    src = first_input[row] + offset  # flat input index per filled cell
    col = max_len - length[row] + offset  # left padding
    columns = {}
    for name in SEQUENCE_FEATURES:
        columns[name] = _fixed_list(_scatter(flat[name], src, row, col, len(length), max_len), max_len)
    columns["targets"] = _fixed_list(_scatter(flat["items"], src + 1, row, col, len(length), max_len), max_len)
    if behaviour_targets:
        next_purchase = next_purchase_flat(flat["items"], flat["event_types"], flat["parent"])
        columns["purchase_targets"] = _fixed_list(_scatter(next_purchase, src, row, col, len(length), max_len), max_len)
        columns["type_targets"] = _fixed_list(_scatter(flat["event_types"], src + 1, row, col, len(length), max_len), max_len)
    if QUERIES in flat:
        columns["target_queries"] = _fixed_list(_scatter(flat[QUERIES], src + 1, row, col, len(length), max_len), max_len)
        oldest = (first_input == starts[user]) & searched_first[user]  # (W,) starts at a searched first event
        columns["first_target"] = pa.array(np.where(oldest, flat["items"][first_input], 0), type=pa.int64())
        columns["first_query"] = pa.array(np.where(oldest, flat[QUERIES][first_input], 0), type=pa.int64())
    return pa.table(columns)


def eval_examples(sequences: pa.Table, split: str, max_len: int) -> pa.Table:
    """One row per user with a target in ``split``: the first event of that split.

    Inputs are the ``max_len`` events before the target, LEFT-padded; ``history`` holds
    every item before the target (for masking); ``target`` and ``user_id`` identify it,
    ``target_type`` is its event type (purchase targets are scored on their own too).
    """
    _check_max_len(max_len)
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    flat, counts = _flatten(sequences, keep_split=None)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    hits = np.flatnonzero(flat["splits"] == SPLIT_CODES[split])
    users, first = np.unique(flat["parent"][hits], return_index=True)
    target_pos = hits[first]  # flat index of each user's target
    n_before = target_pos - starts[users]
    length = np.minimum(n_before, max_len)
    row = np.repeat(np.arange(len(users)), length)
    offset = _rank_within(length)
    src = (target_pos - length)[row] + offset
    col = max_len - length[row] + offset
    columns = {
        name: _fixed_list(_scatter(flat[name], src, row, col, len(users), max_len), max_len)
        for name in SEQUENCE_FEATURES
    }
    columns["target"] = pa.array(flat["items"][target_pos], type=pa.int64())
    columns["target_type"] = pa.array(flat["event_types"][target_pos], type=pa.int64())
    if QUERIES in flat:
        columns["target_query"] = pa.array(flat[QUERIES][target_pos], type=pa.int64())
    hist_idx = np.repeat(starts[users], n_before) + _rank_within(n_before)
    hist_offsets = np.concatenate([[0], np.cumsum(n_before)]).astype(np.int32)
    columns["history"] = pa.ListArray.from_arrays(hist_offsets, pa.array(flat["items"][hist_idx], type=pa.int64()))
    columns["user_id"] = sequences.column("user_id").take(pa.array(users)).combine_chunks().cast(pa.string())
    return pa.table(columns)


def _check_max_len(max_len: int) -> None:
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")


def _flatten(sequences: pa.Table, keep_split: int | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flat int64 event arrays (optionally one split only) and the per-user event counts."""
    missing = [c for c in (*SEQUENCE_FEATURES, "splits") if c not in sequences.column_names]
    if missing:
        raise ValueError(f"sequence table lacks columns {missing} (docs/contracts.md §2)")
    flat = {}
    optional = (QUERIES,) if QUERIES in sequences.column_names else ()
    for name in (*SEQUENCE_FEATURES, "splits", *optional):
        col = sequences.column(name).combine_chunks()
        flat[name] = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int64)
    parent = pc.list_parent_indices(sequences.column("items").combine_chunks()).to_numpy().astype(np.int64)
    if keep_split is not None:
        keep = flat["splits"] == keep_split
        flat = {k: v[keep] for k, v in flat.items()}
        parent = parent[keep]
    flat["parent"] = parent
    counts = np.bincount(parent, minlength=sequences.num_rows).astype(np.int64)
    return flat, counts


def _rank_within(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., n-1 for each n in lengths, concatenated."""
    total = int(lengths.sum())
    group_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - group_start


def _scatter(values: np.ndarray, src: np.ndarray, row: np.ndarray, col: np.ndarray, rows: int, width: int) -> np.ndarray:
    out = np.zeros((rows, width), dtype=np.int64)
    out[row, col] = values[src]
    return out


def _fixed_list(matrix: np.ndarray, width: int) -> pa.ListArray:
    """(rows, width) int64 -> a list<int64> column (every list exactly ``width`` long)."""
    offsets = np.arange(0, (matrix.shape[0] + 1) * width, width, dtype=np.int32)
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=pa.int64()))
