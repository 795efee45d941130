"""Targets beyond the next item, built from each user's timeline with no leakage.

Pure numpy/pyarrow over sequence rows (docs/contracts.md §2), vectorised over all users:

- ``next_purchase_targets``: at every position, the item of the user's next *purchase*
  after it (whatever events come between), 0 when there is none;
- ``next_event_type_targets``: at every position, the type of the next event, 0 at the end;
- ``cutoff_examples``: user-level examples at a global time cut-off: inputs are the events
  strictly before ``cutoff``; ``purchase`` = the user buys in [cutoff, cutoff + horizon),
  ``churn`` = the user has no event at all in that window. Only users with at least one
  event before the cut-off are examples (a user first seen later has nothing to score).

The window is half-open and the inputs end strictly before the cut-off, so no event at or
after the cut-off is ever an input of the example it labels.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray.schema import EVENT_TYPE_INDEX, SECONDS_PER_DAY, SEQUENCE_FEATURES

PURCHASE = EVENT_TYPE_INDEX["purchase"]


def _flat(sequences: pa.Table, name: str) -> np.ndarray:
    return pc.list_flatten(sequences.column(name).combine_chunks()).to_numpy(zero_copy_only=False)


def _user_of_event(sequences: pa.Table) -> np.ndarray:
    """(N,) row index of each flattened event."""
    return pc.list_parent_indices(sequences.column("items").combine_chunks()).to_numpy().astype(np.int64)


def _per_user_lists(values: np.ndarray, lengths: np.ndarray, type_: pa.DataType) -> pa.ListArray:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(offsets, pa.array(values, type=type_))


def next_purchase_targets(sequences: pa.Table) -> pa.ListArray:
    """Per user, per position: the item of the next purchase strictly after it (0 = none)."""
    items, types = _flat(sequences, "items").astype(np.int64), _flat(sequences, "event_types").astype(np.int64)
    user = _user_of_event(sequences)
    target = next_purchase_flat(items, types, user)
    return _per_user_lists(target, np.bincount(user, minlength=sequences.num_rows), pa.int64())


def next_purchase_flat(items: np.ndarray, types: np.ndarray, user: np.ndarray) -> np.ndarray:
    """The same over flat, user-grouped event arrays: at each event, the item of the same
    user's next purchase strictly after it (0 = none)."""
    purchases = np.flatnonzero(types == PURCHASE)  # flat indices, ascending
    target = np.zeros(len(items), dtype=np.int64)
    if len(purchases):
        j = np.searchsorted(purchases, np.arange(len(items)), side="right")  # the first purchase after i
        found = j < len(purchases)
        nxt = purchases[np.where(found, j, 0)]
        found &= user[nxt] == user  # the next purchase must be the same user's
        target[found] = items[nxt[found]]
    return target


def next_event_type_targets(sequences: pa.Table) -> pa.ListArray:
    """Per user, per position: the next event's type index (0 after the user's last event)."""
    types = _flat(sequences, "event_types").astype(np.int64)
    user = _user_of_event(sequences)
    nxt = np.zeros(len(types), dtype=np.int64)
    if len(types) > 1:
        same = user[1:] == user[:-1]
        nxt[:-1] = np.where(same, types[1:], 0)
    return _per_user_lists(nxt, np.bincount(user, minlength=sequences.num_rows), pa.int8())


def cutoff_examples(sequences: pa.Table, cutoff: float, horizon_days: float, max_len: int,
                    churn_horizon_days: float | None = None) -> pa.Table:
    """One row per user active before ``cutoff``: the last ``max_len`` events before it as
    LEFT-padded inputs, the ``purchase`` label of [cutoff, cutoff + horizon_days) and the
    ``churn`` label of [cutoff, cutoff + churn_horizon_days) (default: the same horizon).

    Columns: ``user_id``, the ``SEQUENCE_FEATURES`` (fixed-size lists of ``max_len``),
    ``purchase`` and ``churn`` (int8 0/1), ``last_event_before`` (seconds),
    ``days_since_last_event`` at the cut-off (the heuristic baseline's score), and the
    recency / frequency / monetary counts of everything before the cut-off (int64, the
    RFM baseline's features): ``seconds_since_last_event``, ``seconds_since_first_event``,
    ``events_before``, ``purchases_before``, ``carts_before``.
    """
    from seqrec_ray.data.padding import pad_flat

    churn_horizon_days = horizon_days if churn_horizon_days is None else churn_horizon_days
    for name, value in (("horizon_days", horizon_days), ("churn_horizon_days", churn_horizon_days)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    ts, types = _flat(sequences, "timestamps").astype(np.float64), _flat(sequences, "event_types").astype(np.int64)
    user = _user_of_event(sequences)
    n_users = sequences.num_rows
    before = ts < cutoff
    window = (ts >= cutoff) & (ts < cutoff + horizon_days * SECONDS_PER_DAY)
    churn_window = (ts >= cutoff) & (ts < cutoff + churn_horizon_days * SECONDS_PER_DAY)
    n_before = np.bincount(user[before], minlength=n_users)
    bought = np.bincount(user[window & (types == PURCHASE)], minlength=n_users) > 0
    active = np.bincount(user[churn_window], minlength=n_users) > 0
    last, first = np.full(n_users, -np.inf), np.full(n_users, np.inf)
    np.maximum.at(last, user[before], ts[before])
    np.minimum.at(first, user[before], ts[before])
    keep = np.flatnonzero(n_before > 0)
    columns: dict[str, pa.Array] = {"user_id": sequences.column("user_id").combine_chunks().take(pa.array(keep))}
    kept_events = before & np.isin(user, keep)
    lengths = n_before[keep]
    for name in SEQUENCE_FEATURES:
        matrix = pad_flat(_flat(sequences, name).astype(np.int64)[kept_events], lengths, "left", max_len)  # (U, <=T)
        matrix = np.pad(matrix, ((0, 0), (max_len - matrix.shape[1], 0)))  # (U, max_len)
        offsets = np.arange(0, (len(keep) + 1) * max_len, max_len, dtype=np.int32)
        columns[name] = pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=pa.int64()))
    columns["purchase"] = pa.array(bought[keep].astype(np.int8))
    columns["churn"] = pa.array((~active[keep]).astype(np.int8))
    columns["last_event_before"] = pa.array(last[keep])
    columns["days_since_last_event"] = pa.array((cutoff - last[keep]) / SECONDS_PER_DAY)
    columns["seconds_since_last_event"] = pa.array(np.round(cutoff - last[keep]).astype(np.int64))
    columns["seconds_since_first_event"] = pa.array(np.round(cutoff - first[keep]).astype(np.int64))
    columns["events_before"] = pa.array(n_before[keep].astype(np.int64))
    for name, event_type in (("purchases_before", PURCHASE), ("carts_before", EVENT_TYPE_INDEX["cart"])):
        columns[name] = pa.array(np.bincount(user[before & (types == event_type)], minlength=n_users)[keep].astype(np.int64))
    return pa.table(columns)
