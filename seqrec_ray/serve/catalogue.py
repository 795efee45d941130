"""The item catalogue as serving sees it: raw id <-> index maps, categories, popularity.

Built once per checkpoint from the checkpoint's own vocabulary (docs/contracts.md §3), so
the indices always match the weights they are used with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from seqrec_ray.schema import FIRST_ID_INDEX, OOV_INDEX


@dataclass(frozen=True)
class ItemVocab:
    """Index <-> raw id maps. Row 0 is padding and row 1 out-of-vocabulary in both tables."""

    item_raw_ids: list[str]
    item_category: np.ndarray  # (V,) int64 category index of each item
    item_counts: np.ndarray  # (V,) int64 training-log counts (the popularity prior)
    category_raw_ids: list[str]
    _items: dict[str, int] = field(init=False, repr=False, compare=False)
    _categories: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.item_raw_ids)
        if n < FIRST_ID_INDEX + 1:
            raise ValueError(f"an item vocabulary needs pad, oov and at least one item, got {n} rows")
        for name in ("item_category", "item_counts"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, item_raw_ids has {n}")
        # Pad and oov rows never map back from a raw id, even if a source used "<pad>".
        items = {raw: i for i, raw in enumerate(self.item_raw_ids) if i >= FIRST_ID_INDEX}
        cats = {raw: i for i, raw in enumerate(self.category_raw_ids) if i >= FIRST_ID_INDEX}
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_categories", cats)

    @classmethod
    def from_vocab(cls, vocab: Any) -> "ItemVocab":
        """From ``seqrec_ray.data.artifacts.Vocab`` (the checkpoint's ``.vocab``)."""
        return cls(
            item_raw_ids=[str(x) for x in vocab.item_raw_ids],
            item_category=np.asarray(vocab.category_of_item, dtype=np.int64),
            item_counts=np.asarray(vocab.item_counts, dtype=np.int64),
            category_raw_ids=[str(x) for x in vocab.category_raw_ids],
        )

    @property
    def num_items(self) -> int:
        return len(self.item_raw_ids)

    def item_index(self, raw: str) -> int:
        return self._items.get(raw, OOV_INDEX)

    def item_indices(self, raws: Iterable[str]) -> np.ndarray:
        return np.fromiter((self._items.get(r, OOV_INDEX) for r in raws), dtype=np.int64)

    def category_index(self, raw: str) -> int:
        return self._categories.get(raw, OOV_INDEX)

    def known_categories(self, raws: Iterable[str]) -> list[int]:
        """Indices of the raw category ids this vocabulary knows (unknown ones dropped)."""
        return sorted({self._categories[r] for r in raws if r in self._categories})
