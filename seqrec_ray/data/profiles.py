"""User profiles (用户画像): per-user aggregates and tags from sorted events.

Tags are relative to ``reference_time`` (the newest event in the whole log, so every
bucket tags against the same clock): ``new`` first seen within ``new_days``, ``active``
last seen within ``active_days``, ``dormant`` not seen for more than ``dormant_days``;
``buyer`` has a purchase, ``browser`` has none. Positional-time sources (S3-Rec) get no
time tags (``time_tags=False``): their "seconds" are positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray import schema as S
from seqrec_ray.data.events import SESSION_INDEX, user_starts
from seqrec_ray.data.sequences import event_type_indices
from seqrec_ray.data.vocab import string_codes

TAGS = ("new", "active", "dormant", "buyer", "browser")
COUNT_COLUMNS = {"view": "n_view", "click": "n_click", "cart": "n_cart", "fav": "n_fav",
                 "purchase": "n_purchase", "search": "n_search"}
PROFILE_SCHEMA = pa.schema(
    [(S.USER_ID, pa.string()), ("n_events", pa.int64())]
    + [(c, pa.int64()) for c in COUNT_COLUMNS.values()]
    + [("distinct_items", pa.int64()), ("distinct_categories", pa.int64()),
       ("top_categories", pa.list_(pa.string())), ("first_seen", pa.float64()),
       ("last_seen", pa.float64()), ("purchase_rate", pa.float64()),
       ("mean_price", pa.float64()), ("tags", pa.list_(pa.string())),
       ("n_sessions", pa.int64())])
DAY = S.SECONDS_PER_DAY


@dataclass(frozen=True)
class ProfileConfig:
    top_categories: int = 5
    new_days: float = 7.0
    active_days: float = 7.0
    dormant_days: float = 30.0
    time_tags: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.top_categories, int) or self.top_categories < 1:
            raise ValueError(f"top_categories must be an integer >= 1, got {self.top_categories!r}")
        for name in ("new_days", "active_days", "dormant_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.dormant_days < self.active_days:
            raise ValueError(f"dormant_days ({self.dormant_days}) must be >= active_days "
                             f"({self.active_days})")


def _pair_counts(group: np.ndarray, codes: np.ndarray, n_codes: int):
    """Unique (group, code) pairs over known codes: (groups, codes, counts)."""
    known = codes >= 0
    keys = group[known] * max(n_codes, 1) + codes[known]
    unique, counts = np.unique(keys, return_counts=True)
    return unique // max(n_codes, 1), unique % max(n_codes, 1), counts


def _top_categories(group: np.ndarray, category, n_users: int, k: int) -> pa.Array:
    """Per user, up to k raw category ids, most frequent first (ties: smaller raw id)."""
    codes, dictionary = string_codes(category)
    groups, cats, counts = _pair_counts(group, codes, len(dictionary))
    lexical = pc.rank(dictionary, sort_keys="ascending").to_numpy() if len(dictionary) else (
        np.zeros(0, np.int64))
    order = np.lexsort((lexical[cats] if len(cats) else cats, -counts, groups))
    groups, cats = groups[order], cats[order]
    first_of_group = np.searchsorted(groups, groups, side="left")
    keep = np.arange(len(groups)) - first_of_group < k
    per_user = np.bincount(groups[keep], minlength=n_users)
    offsets = np.concatenate([[0], np.cumsum(per_user)]).astype(np.int32)
    values = pc.take(dictionary, pa.array(cats[keep])).cast(pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _tags(first_seen, last_seen, n_purchase, reference_time, config) -> pa.Array:
    n = len(first_seen)
    if config.time_tags:
        new = first_seen >= reference_time - config.new_days * DAY
        active = last_seen >= reference_time - config.active_days * DAY
        dormant = last_seen < reference_time - config.dormant_days * DAY
    else:
        new = active = dormant = np.zeros(n, dtype=bool)
    flags = np.stack([new, active, dormant, n_purchase > 0, n_purchase == 0], axis=1)  # (U, 5)
    offsets = np.concatenate([[0], np.cumsum(flags.sum(axis=1))]).astype(np.int32)
    values = np.tile(np.array(TAGS, dtype=object), n)[flags.ravel()]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.string()))


def build_profiles(events: pa.Table, reference_time: float, config: ProfileConfig) -> pa.Table:
    """Sorted, sessionized events (all events of each user) -> one profile row per user."""
    first = user_starts(events)
    group = np.cumsum(first) - 1
    n_users = int(first.sum())
    ts = events[S.TIMESTAMP].to_numpy()
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(ts)) - 1
    n_events = np.bincount(group, minlength=n_users)
    types = event_type_indices(events[S.EVENT_TYPE])
    out = {S.USER_ID: events[S.USER_ID].combine_chunks().take(pa.array(starts)),
           "n_events": n_events}
    for i, column in enumerate(COUNT_COLUMNS.values()):
        out[column] = np.bincount(group, weights=types == i + 1, minlength=n_users).astype(np.int64)
    item_codes, items = string_codes(events[S.ITEM_ID])
    out["distinct_items"] = np.bincount(_pair_counts(group, item_codes, len(items))[0],
                                        minlength=n_users)
    cat_codes, cats = string_codes(events[S.CATEGORY_ID])
    out["distinct_categories"] = np.bincount(_pair_counts(group, cat_codes, len(cats))[0],
                                             minlength=n_users)
    out["top_categories"] = _top_categories(group, events[S.CATEGORY_ID], n_users,
                                            config.top_categories)
    out["first_seen"], out["last_seen"] = ts[starts], ts[ends]
    out["purchase_rate"] = out["n_purchase"] / n_events
    price = events[S.PRICE].to_numpy(zero_copy_only=False).astype(np.float64)
    priced = ~np.isnan(price)
    n_priced = np.bincount(group, weights=priced, minlength=n_users)
    price_sum = np.bincount(group, weights=np.where(priced, price, 0.0), minlength=n_users)
    out["mean_price"] = pa.array(price_sum / np.maximum(n_priced, 1), mask=n_priced == 0)
    out["tags"] = _tags(out["first_seen"], out["last_seen"], out["n_purchase"],
                        reference_time, config)
    out["n_sessions"] = events[SESSION_INDEX].to_numpy()[ends].astype(np.int64) + 1
    return pa.table({f.name: out[f.name] for f in PROFILE_SCHEMA}, schema=PROFILE_SCHEMA)
