"""The live catalogue: items posted or discontinued while the service runs (no Ray here).

``POST /items`` and ``DELETE /items/{id}`` write to the store's item log
(``ProfileStore.put_items`` / ``delete_items``); every encoder and ranker replica replays
that log into a ``LiveCatalogue`` before it serves a request (``sync``): from the start
when it loads a checkpoint (a restarted replica is where the others are), then whatever
is newer than the last update it applied. An item the checkpoint never saw gets the next
free index and a vector built from its content (``models/items.py``); an update of a known
item replaces its content; a deleted item is never recommended again until posted again.

Indices of live items are this replica's own (replicas may replay in different
batches); they never leave it: encoders send vectors, rankers answer raw ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from seqrec_ray.data.vocab import Vocab
from seqrec_ray.schema import FIRST_ID_INDEX, OOV_INDEX


@dataclass
class CatalogueChanges:
    """What one sync changed, for the holders of item vectors."""

    added: list[int] = field(default_factory=list)  # new indices, in order
    added_tokens: np.ndarray | None = None  # (len(added), L) int32
    replaced: list[int] = field(default_factory=list)  # indices whose content changed
    replaced_tokens: np.ndarray | None = None

    @property
    def vectors_changed(self) -> bool:
        return bool(self.added or self.replaced)


class LiveCatalogue:
    """The checkpoint's vocabulary plus the live items, with the lookups serving needs.

    ``token_config`` (a ``data.catalogue.TokenConfig``) is the model's; None for a model
    without item content, which can stop recommending items but never add any.
    """

    def __init__(self, vocab: Vocab, token_config=None) -> None:
        self.vocab = vocab
        self.token_config = token_config
        self.seq = 0
        self._new: dict[str, int] = {}  # raw id -> index, for items the checkpoint lacks
        self._new_raw: list[str] = []
        self._category = np.asarray(vocab.item_category, dtype=np.int64)  # grows with live items
        self._deleted: set[int] = set()
        self._deleted_unknown: set[str] = set()  # discontinued ids that have no row here
        self._blocked: torch.Tensor | None = None

    # ------------------------------------------------------------ lookups

    @property
    def num_items(self) -> int:
        return self.vocab.num_items + len(self._new_raw)

    @property
    def live_items(self) -> int:
        return len(self._new_raw)

    def item_index(self, raw_id: str) -> int:
        index = self.vocab.item_index(raw_id)
        return index if index != OOV_INDEX else self._new.get(str(raw_id), OOV_INDEX)

    def item_indices(self, raw_ids: Iterable[str]) -> np.ndarray:
        if not self._new:
            return self.vocab.item_indices(raw_ids)
        return np.fromiter((self.item_index(r) for r in raw_ids), dtype=np.int64)

    def raw_id(self, index: int) -> str:
        base = self.vocab.num_items
        return self.vocab.item_raw_ids[index] if index < base else self._new_raw[index - base]

    def is_new(self, index: int) -> bool:
        return index >= self.vocab.num_items

    def is_discontinued(self, raw_id: str, index: int) -> bool:
        return index in self._deleted if index >= FIRST_ID_INDEX else str(raw_id) in self._deleted_unknown

    @property
    def item_category(self) -> np.ndarray:
        """(V,) category index of every item, live ones included (do not modify)."""
        return self._category

    def category_index(self, raw_id: str | None) -> int:
        return self.vocab.category_index(raw_id)

    def known_categories(self, raw_ids: Iterable[str]) -> list[int]:
        return self.vocab.known_categories(raw_ids)

    def blocked(self, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """(V,) bool of discontinued items, or None when there are none."""
        if not self._deleted:
            return None
        if self._blocked is None or self._blocked.shape[0] != self.num_items:
            mask = torch.zeros(self.num_items, dtype=torch.bool)
            mask[torch.tensor(sorted(self._deleted), dtype=torch.int64)] = True
            self._blocked = mask
        return self._blocked.to(device)

    # ------------------------------------------------------------ replay

    def apply(self, updates: Sequence) -> CatalogueChanges:
        """Apply store ``ItemUpdate``s (seq order); returns what changed."""
        from seqrec_ray.data.catalogue import item_tokens

        changes = CatalogueChanges()
        added_rows, replaced_rows = [], []
        categories = self._category.tolist() if updates else []
        for update in updates:
            self.seq = max(self.seq, int(update.seq))
            index = self.item_index(update.item_id)
            if update.item is None:
                if index >= FIRST_ID_INDEX:
                    self._deleted.add(index)
                else:
                    self._deleted_unknown.add(str(update.item_id))
                continue
            self._deleted_unknown.discard(str(update.item_id))
            if self.token_config is None:  # no content: a posted item can only be revived
                self._deleted.discard(index)
                continue
            if index < FIRST_ID_INDEX:
                index = self.vocab.num_items + len(self._new_raw)
                self._new[str(update.item_id)] = index
                self._new_raw.append(str(update.item_id))
                categories.append(self.category_index(update.item.get("category_id")))
                changes.added.append(index)
                added_rows.append(update.item)
            else:
                category = update.item.get("category_id")
                if category is not None:
                    categories[index] = self.category_index(category)
                changes.replaced.append(index)
                replaced_rows.append(update.item)
            self._deleted.discard(index)
        self._blocked = None
        if updates:
            self._category = np.asarray(categories, dtype=np.int64)
        if added_rows:
            changes.added_tokens = item_tokens(added_rows, self.token_config)
        if replaced_rows:
            changes.replaced_tokens = item_tokens(replaced_rows, self.token_config)
        return changes


def sync_catalogue(store, catalogue: LiveCatalogue) -> CatalogueChanges | None:
    """Read what the store's item log holds past ``catalogue.seq`` and apply it; None when
    there is nothing new (one cheap read)."""
    if store.latest_item_seq() <= catalogue.seq:
        return None
    return catalogue.apply(store.item_updates(catalogue.seq))
