"""The profile and history store interface.

The store keeps raw ids only (never vocabulary indices), so a new checkpoint with a new
vocabulary rolls out without touching the store. Backends: ``sqlite`` (embedded, the
default) and ``redis`` (networked, for multi-node Serve).

The store also keeps the live item catalogue as a log: every write of an item (a post, an
update, a deletion) takes the next ``seq``, and an item's row holds only its latest state.
A Serve replica replays ``item_updates(0)`` at start and then polls
``item_updates(last_seq_seen)``. A write becomes visible only together with every write of
a lower seq (seqs are taken inside the write's own atomic step), so polling never skips a
write and every replica that has caught up to seq N holds the same catalogue.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredEvent:
    """One behaviour event as the store keeps it (raw ids, float seconds)."""

    user_id: str
    item_id: str
    event_type: str
    timestamp: float
    session_id: str | None = None
    category_id: str | None = None
    price: float | None = None
    query: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
            "session_id": self.session_id,
            "category_id": self.category_id,
            "price": self.price,
            "query": self.query,
        }


@dataclass(frozen=True)
class ItemUpdate:
    """The latest state of one catalogue item, as ``item_updates`` returns it."""

    seq: int  # position in the store's item log; strictly increasing over writes
    item_id: str
    item: dict[str, Any] | None  # the catalogue row (JSON-able, holds item_id); None = deleted
    updated_at: float  # time.time() of the write


@dataclass(frozen=True)
class StoreStats:
    users_with_profile: int
    users_with_history: int
    events: int
    extra: dict[str, Any] = field(default_factory=dict)


class ProfileStore(abc.ABC):
    """Per-user profile (a JSON-able dict) and recent event history (oldest first)."""

    @abc.abstractmethod
    def put_profiles(self, profiles: Iterable[dict[str, Any]]) -> int:
        """Upsert profiles; each dict must hold ``user_id``. Returns how many were written."""

    @abc.abstractmethod
    def get_profile(self, user_id: str) -> dict[str, Any] | None:
        """The user's profile, or None when the user has none."""

    @abc.abstractmethod
    def append_events(self, events: Sequence[StoredEvent]) -> int:
        """Append events durably: once this returns, they survive a crash. Returns the count."""

    @abc.abstractmethod
    def get_history(self, user_id: str, limit: int) -> list[StoredEvent]:
        """The user's ``limit`` most recent events, oldest first (ties keep insertion order)."""

    @abc.abstractmethod
    def forget_user(self, user_id: str) -> int:
        """Delete the user's profile and history and record the deletion durably (with the
        time it was made), in one step: once this returns, the user is gone and listed in
        ``forgotten_users``. Later ``append_events`` for the id start a new history.
        Returns how many events were removed (0 for a user the store never had)."""

    @abc.abstractmethod
    def forgotten_users(self) -> list[tuple[str, float]]:
        """Every recorded deletion as (user_id, forgotten_at seconds), oldest first; a user
        forgotten twice appears once, with the latest time."""

    @abc.abstractmethod
    def put_items(self, items: Sequence[dict[str, Any]]) -> int:
        """Add or replace catalogue rows; each dict must hold ``item_id`` (stored as a str,
        in the row too). One durable transaction (like ``append_events``): the rows get
        consecutive seqs in the given order; an id repeated in the call is written once,
        with its last row, at the place of its last occurrence. Returns the items written."""

    @abc.abstractmethod
    def delete_items(self, item_ids: Sequence[str]) -> int:
        """Mark items deleted (discontinued), durably and in one transaction: each one's
        latest state becomes ``item=None`` with a new seq. An id never posted is recorded
        too (a trained item can be discontinued). Repeats count once. Returns the count."""

    @abc.abstractmethod
    def item_updates(self, after_seq: int = 0, limit: int | None = None) -> list[ItemUpdate]:
        """The latest state of every item whose last write has seq > ``after_seq``, in seq
        order, at most ``limit`` of them (None = all): an item written three times appears
        once, with its newest seq. Deleted items appear with ``item=None``."""

    @abc.abstractmethod
    def latest_item_seq(self) -> int:
        """The highest item seq written so far (0 when none): a cheap "anything new?"."""

    @abc.abstractmethod
    def stats(self) -> StoreStats:
        """Counts for health checks and tests; ``extra["items"]`` counts live (not deleted)
        catalogue items."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
