"""The profile and history store interface.

The store keeps raw ids only (never vocabulary indices), so a new checkpoint with a new
vocabulary rolls out without touching the store. Backends: ``sqlite`` (embedded, the
default) and ``redis`` (networked, for multi-node Serve).
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
    def stats(self) -> StoreStats:
        """Counts for health checks and tests."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
