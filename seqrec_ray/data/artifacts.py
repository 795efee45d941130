"""Load a featurize artifacts directory (docs/contracts.md §2) without Ray.

Later stages (training, evaluation, serving) need only these loaders and the directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqrec_ray import schema as S

ARTIFACTS_VERSION = 1
MANIFEST = "manifest.json"
VOCAB_DIR = "vocab"
ITEMS_FILE = "items.parquet"
CATEGORIES_FILE = "categories.parquet"


def load_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory!r} is not a featurize artifacts directory "
                                f"(no {MANIFEST})")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("artifacts_version") != ARTIFACTS_VERSION:
        raise ValueError(f"{path}: artifacts_version {manifest.get('artifacts_version')!r}, "
                         f"this code reads version {ARTIFACTS_VERSION}")
    return manifest


@dataclass(frozen=True)
class Vocab:
    """Item and category vocabularies: index <-> raw id, item -> category index."""

    item_raw_ids: tuple[str, ...]
    category_raw_ids: tuple[str, ...]
    category_of_item: np.ndarray  # (num_items,) int64 category index per item index
    item_counts: np.ndarray  # (num_items,) int64
    _item_lookup: dict = field(default_factory=dict, repr=False, compare=False)
    _category_lookup: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.category_of_item) != len(self.item_raw_ids):
            raise ValueError(f"category_of_item has {len(self.category_of_item)} entries for "
                             f"{len(self.item_raw_ids)} items")
        real = range(S.FIRST_ID_INDEX, len(self.item_raw_ids))
        self._item_lookup.update((self.item_raw_ids[i], i) for i in real)
        self._category_lookup.update(
            (self.category_raw_ids[i], i) for i in range(S.FIRST_ID_INDEX,
                                                         len(self.category_raw_ids)))

    @property
    def num_items(self) -> int:
        """Item vocab size, counting pad and oov."""
        return len(self.item_raw_ids)

    @property
    def num_categories(self) -> int:
        return len(self.category_raw_ids)

    def item_index(self, raw_id: str) -> int:
        """Index of a raw item id; unknown or rare ids -> OOV (1)."""
        return self._item_lookup.get(str(raw_id), S.OOV_INDEX)

    def category_index(self, raw_id: str | None) -> int:
        if raw_id is None:
            return S.OOV_INDEX
        return self._category_lookup.get(str(raw_id), S.OOV_INDEX)

    def item_raw_id(self, index: int) -> str:
        return self.item_raw_ids[index]


def load_vocab(directory: str) -> Vocab:
    """From an artifacts directory or a checkpoint (either holds ``vocab/``)."""
    base = os.path.join(directory, VOCAB_DIR)
    items = pq.read_table(os.path.join(base, ITEMS_FILE)).sort_by("index")
    categories = pq.read_table(os.path.join(base, CATEGORIES_FILE)).sort_by("index")
    for name, table in (("items", items), ("categories", categories)):
        index = table["index"].to_numpy()
        if not np.array_equal(index, np.arange(len(index))):
            raise ValueError(f"{base}/{name}: indices are not 0..{len(index) - 1}")
    return Vocab(
        item_raw_ids=tuple(items["raw_id"].to_pylist()),
        category_raw_ids=tuple(categories["raw_id"].to_pylist()),
        category_of_item=items["category_index"].to_numpy(),
        item_counts=items["count"].to_numpy(),
    )


def _read_parts(directory: str, kind: str, schema: pa.Schema | None = None) -> pa.Table:
    path = os.path.join(directory, kind)
    files = sorted(f for f in os.listdir(path) if f.endswith(".parquet")) if os.path.isdir(
        path) else []
    if not files:
        if schema is None:
            raise FileNotFoundError(f"no {kind} parts under {directory!r}")
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(os.path.join(path, f)) for f in files])


def load_sequences(directory: str) -> pa.Table:
    """All users' sequence rows (one row per user)."""
    from seqrec_ray.data.sequences import SEQUENCE_SCHEMA

    return _read_parts(directory, "sequences", SEQUENCE_SCHEMA)


def load_profiles(directory: str) -> pa.Table:
    from seqrec_ray.data.profiles import PROFILE_SCHEMA

    return _read_parts(directory, "profiles", PROFILE_SCHEMA)


def load_rejects(directory: str) -> pa.Table:
    """Rejected rows (reader columns + ``reason``); empty when nothing was rejected."""
    schema = S.READER_SCHEMA.append(pa.field("reason", pa.string()))
    return _read_parts(directory, "rejects", schema)
