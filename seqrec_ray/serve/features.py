"""A user's stored history (raw ids) -> the encoder's LEFT-padded index features.

The per-event features follow featurize exactly (docs/contracts.md §2), so a history
served from the store looks to the model like the sequences it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seqrec_ray.data.padding import pad_rows
from seqrec_ray.data.vocab import Vocab

if TYPE_CHECKING:
    from .live_items import LiveCatalogue
from seqrec_ray.schema import EVENT_TYPE_INDEX, FIRST_EVENT_BUCKET, SEQUENCE_FEATURES, gap_bucket_of


def gap_buckets(timestamps: np.ndarray) -> np.ndarray:
    """(N,) float seconds, oldest first -> (N,) int64 buckets.

    1 for the first event; else 2 + floor(log2(1 + gap_seconds)) capped at 31. A clock
    that runs backwards (gap < 0) counts as no gap rather than an error.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[FIRST_EVENT_BUCKET], gap_bucket_of(np.diff(ts))]).astype(np.int64)


def history_features(history: Sequence[Mapping[str, Any]], vocab: Vocab | LiveCatalogue, max_len: int) -> dict[str, np.ndarray]:
    """Events (oldest first, ``StoredEvent.as_dict()`` shape) -> the last ``max_len`` positions.

    Unknown items map to OOV (1); ``vocab`` may be a LiveCatalogue, which also knows the
    items posted live. As in featurize, an event's category is its own
    ``category_id`` (OOV when unknown) and, for an event without one, its item's category. Gaps are computed over the whole
    fetched history before truncation, so the oldest kept event keeps its real gap.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    items = vocab.item_indices(str(e["item_id"]) for e in history)
    types = np.fromiter((EVENT_TYPE_INDEX.get(e["event_type"], 0) for e in history), dtype=np.int64)
    categories = vocab.item_category[items].copy()
    for i, event in enumerate(history):
        if event.get("category_id") is not None:
            categories[i] = vocab.category_index(str(event["category_id"]))
    gaps = gap_buckets(np.fromiter((float(e["timestamp"]) for e in history), dtype=np.float64))
    keep = slice(max(0, len(history) - max_len), None)
    return {"items": items[keep], "event_types": types[keep], "categories": categories[keep], "gap_buckets": gaps[keep]}


def profile_counts(before: Sequence[Mapping[str, Any]], at: float) -> dict[str, int]:
    """The ``heads.PROFILE_FEATURES`` counts at ``at`` of the events ``before`` it (non-empty),
    as targets.cutoff_examples computes them for training."""
    times = [float(e["timestamp"]) for e in before]
    types = [e["event_type"] for e in before]
    return {"seconds_since_last_event": int(round(at - max(times))),
            "seconds_since_first_event": int(round(at - min(times))),
            "events_before": len(before), "purchases_before": types.count("purchase"), "carts_before": types.count("cart")}


def left_pad(rows: Sequence[Mapping[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Per-user feature rows of different lengths -> (B, T) int64 tensors, LEFT-padded with 0.

    T is the longest row, so the last column is every user's most recent event.
    """
    return {key: torch.from_numpy(pad_rows([r[key] for r in rows], "left")) for key in SEQUENCE_FEATURES}
