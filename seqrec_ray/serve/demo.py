"""A small synthetic shop for smoke tests and the serving benchmark.

Writes an artifacts directory per docs/contracts.md §2 (leave-one-out split) and fills a
profile/history store, so a checkpoint can be trained and served in seconds without the
featurize pipeline. Users browse a category in a fixed item order (a sequence a
model can learn: the next item is the one after the current one), then switch to another
category; events run through the funnel view -> click -> cart -> purchase.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqrec_ray.schema import EVENT_TYPE_INDEX, OOV_TOKEN, PAD_TOKEN, SCHEMA_VERSION
from seqrec_ray.store.base import StoredEvent

from .features import gap_buckets

FUNNEL = ("view", "click", "cart", "purchase")


@dataclass(frozen=True)
class DemoShop:
    users: int = 60
    categories: int = 4
    items_per_category: int = 10
    events_per_user: int = 12
    intents: int = 2
    start_time: float = 1.7e9
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("users", "categories", "items_per_category"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.intents <= self.events_per_user:
            raise ValueError(f"intents must be in [1, events_per_user], got {self.intents}")
        if self.events_per_user < 3:
            raise ValueError(f"events_per_user must be >= 3 (leave-one-out needs 3), got {self.events_per_user}")

    def item_id(self, category: int, position: int) -> str:
        return f"item-{category}-{position % self.items_per_category}"

    def events(self) -> list[StoredEvent]:
        """Every user's events, oldest first; the same shop gives the same events.

        A user browses ``intents`` categories one after another (the first is the home
        category ``u % categories``), so a model must follow the most recent one.
        """
        rng = np.random.default_rng(self.seed)
        per_intent = -(-self.events_per_user // self.intents)
        out = []
        for u in range(self.users):
            category = u % self.categories
            for j in range(self.events_per_user):
                if j and j % per_intent == 0 and self.categories > 1:
                    category = (category + int(rng.integers(1, self.categories))) % self.categories
                if j % per_intent == 0:
                    start = int(rng.integers(self.items_per_category)) - j
                out.append(StoredEvent(
                    user_id=f"user-{u}", item_id=self.item_id(category, start + j), event_type=FUNNEL[j % len(FUNNEL)],
                    timestamp=self.start_time + u * 10_000 + j * 60.0, category_id=f"cat-{category}",
                ))
        return out


def write_artifacts(events: list[StoredEvent], out_dir: str | Path) -> Path:
    """The events as a version-1 artifacts directory (vocab, sequences, profiles, manifest)."""
    out = Path(out_dir)
    for sub in ("vocab", "sequences", "profiles", "rejects"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    items, item_counts = _vocab([e.item_id for e in events])
    cats, cat_counts = _vocab([e.category_id or "" for e in events])
    item_index = {raw: i for i, raw in enumerate(items)}
    cat_index = {raw: i for i, raw in enumerate(cats)}
    item_cat = [0, 1] + [cat_index[next(e.category_id for e in events if e.item_id == raw)] for raw in items[2:]]
    pq.write_table(pa.table({"index": np.arange(len(items)), "raw_id": items, "count": item_counts, "category_index": item_cat}),
                   out / "vocab" / "items.parquet")
    pq.write_table(pa.table({"index": np.arange(len(cats)), "raw_id": cats, "count": cat_counts}), out / "vocab" / "categories.parquet")
    users = sorted({e.user_id for e in events}, key=lambda u: int(u.rsplit("-", 1)[1]))
    rows = [_sequence_row(u, [e for e in events if e.user_id == u], item_index, cat_index) for u in users]
    pq.write_table(pa.Table.from_pylist(rows, schema=SEQUENCE_SCHEMA), out / "sequences" / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist(profiles(events)), out / "profiles" / "part-00000.parquet")
    manifest = {
        "schema_version": SCHEMA_VERSION, "artifacts_version": 1, "created_at": "demo", "input": "demo", "format": "events",
        "rows_read": len(events), "rows_kept": len(events), "rows_rejected": 0, "rejected_by_reason": {}, "rows_duplicate": 0,
        "users": len(users), "items": len(items) - 2, "categories": len(cats) - 2,
        "vocab_sizes": {"items": len(items), "categories": len(cats)}, "split": {"protocol": "leave_one_out"},
        "max_seq_len": max(len(r["items"]) for r in rows), "config": {"demo": True}, "stage_seconds": {},
        "data_version": f"demo-{len(events)}",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def profiles(events: list[StoredEvent]) -> list[dict[str, Any]]:
    """Per-user profile rows (the contract's main fields) computed from the events."""
    out = []
    for user in sorted({e.user_id for e in events}):
        mine = [e for e in events if e.user_id == user]
        counts = {t: sum(e.event_type == t for e in mine) for t in EVENT_TYPE_INDEX}
        cats = [e.category_id for e in mine if e.category_id]
        out.append({
            "user_id": user, "n_events": len(mine), **{f"n_{t}": n for t, n in counts.items()},
            "distinct_items": len({e.item_id for e in mine}), "distinct_categories": len(set(cats)),
            "top_categories": sorted(set(cats), key=lambda c: -cats.count(c))[:5],
            "first_seen": mine[0].timestamp, "last_seen": mine[-1].timestamp,
            "purchase_rate": counts["purchase"] / len(mine), "mean_price": None,
            "tags": ["buyer"] if counts["purchase"] else ["browser"],
        })
    return out


SEQUENCE_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("items", pa.list_(pa.int64())), ("event_types", pa.list_(pa.int8())),
    ("categories", pa.list_(pa.int64())), ("gap_buckets", pa.list_(pa.int8())), ("hours", pa.list_(pa.int8())),
    ("weekdays", pa.list_(pa.int8())), ("timestamps", pa.list_(pa.float64())), ("splits", pa.list_(pa.int8())),
])


def _vocab(raws: list[str]) -> tuple[list[str], list[int]]:
    """Pad, oov, then ids by count (descending) and id: the contract's index layout."""
    uniq, counts = np.unique(np.array(raws, dtype=object), return_counts=True)
    order = sorted(range(len(uniq)), key=lambda i: (-counts[i], uniq[i]))
    return [PAD_TOKEN, OOV_TOKEN] + [str(uniq[i]) for i in order], [0, 0] + [int(counts[i]) for i in order]


def _sequence_row(user: str, mine: list[StoredEvent], item_index: dict, cat_index: dict) -> dict[str, Any]:
    ts = np.array([e.timestamp for e in mine])
    n = len(mine)
    splits = [0] * n if n < 3 else [0] * (n - 2) + [1, 2]
    return {
        "user_id": user,
        "items": [item_index[e.item_id] for e in mine],
        "event_types": [EVENT_TYPE_INDEX[e.event_type] for e in mine],
        "categories": [cat_index.get(e.category_id or "", 1) for e in mine],
        "gap_buckets": gap_buckets(ts).tolist(),
        "hours": ((ts // 3600) % 24).astype(int).tolist(),
        "weekdays": (((ts // 86400) + 3) % 7).astype(int).tolist(),  # 1970-01-01 was a Thursday
        "timestamps": ts.tolist(),
        "splits": splits,
    }
