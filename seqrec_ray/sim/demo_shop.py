"""A small synthetic shop for smoke tests and the serving benchmark: plain events.

Its events go through the real featurize path like any log
(``seqrec_ray.data.pipeline.featurize_in_process``), so a checkpoint can be trained and
served in seconds on real artifacts. Users browse a category in a fixed item order (a
sequence a model can learn: the next item is the one after the current one), then
switch to another category; events run through the funnel view -> click -> cart -> purchase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec_ray.store.base import StoredEvent

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

    def item_row(self, category: int, name: str) -> dict:
        """A catalogue row for an item of ``category`` (a brand and words of its own)."""
        kind = PRODUCT_TYPES[category % len(PRODUCT_TYPES)]
        return {"item_id": name, "title": f"{BRANDS[category % len(BRANDS)]} {kind} {name.rsplit('-', 1)[-1]}",
                "category_id": f"cat-{category}", "brand": BRANDS[category % len(BRANDS)],
                "price": float(10 * (category + 1)), "attributes": [kind, f"line-{category}"]}

    def catalogue(self) -> list[dict]:
        """Every item's catalogue row: what a category's items share is what a model can
        read from an item it never saw (the shop's items are listed in order)."""
        return [self.item_row(c, self.item_id(c, p)) for c in range(self.categories)
                for p in range(self.items_per_category)]


BRANDS = ("acme", "birch", "corvo", "delta", "ember", "fjord", "gala", "halo")
PRODUCT_TYPES = ("kettle", "sneaker", "lamp", "scarf", "backpack", "mug", "pillow", "jacket")
