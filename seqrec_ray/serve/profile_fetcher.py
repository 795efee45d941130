"""ProfileFetcher deployment: the stage that reads profiles and histories and writes to
the store (events, deletions, catalogue updates). Encoders and rankers only read the
store's item log, to replay the live catalogue (live_items.py)."""

from __future__ import annotations

import logging
from typing import Any

from ray import serve

from seqrec_ray.store.base import StoredEvent

from .config import ServeConfig
from .privacy import user_ref

logger = logging.getLogger("ray.serve")


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class ProfileFetcher:
    """Reads profiles and recent histories; appends posted events durably.

    Store calls are short and synchronous (an SQLite read is well under a millisecond),
    so they run on the replica's event loop rather than in threads: SQLite connections
    belong to the thread that opened them.
    """

    def __init__(self, config: ServeConfig) -> None:
        from seqrec_ray.store import open_store

        self._store = open_store(config.store)
        self._history_limit = config.history_limit
        self._log_user_ids = config.log_user_ids

    async def fetch(self, user_id: str) -> dict[str, Any]:
        """The user's profile (None if absent) and recent events, oldest first."""
        history = self._store.get_history(user_id, self._history_limit)
        return {"profile": self._store.get_profile(user_id), "history": [e.as_dict() for e in history]}

    async def fetch_many(self, user_ids: list[str]) -> list[dict[str, Any]]:
        """``fetch`` for a batch of users in one call (the ingress batches /recommend)."""
        return [await self.fetch(user_id) for user_id in user_ids]

    async def append(self, events: list[dict[str, Any]]) -> int:
        """Returns only after the store has committed, so a 200 means the events are durable."""
        return self._store.append_events([StoredEvent(**e) for e in events])

    async def forget(self, user_id: str) -> int:
        """Delete the user's profile and history (recorded by the store); returns the events
        removed. Once this returns, fetches see an unknown user and new events start afresh."""
        removed = self._store.forget_user(user_id)
        logger.info("forgot %s: %d events removed", user_ref(user_id, self._log_user_ids), removed)
        return removed

    async def put_items(self, items: list[dict[str, Any]]) -> int:
        """Add or update catalogue rows; returns after the store has committed them."""
        return self._store.put_items(items)

    async def delete_items(self, item_ids: list[str]) -> int:
        return self._store.delete_items(item_ids)

    async def ping(self) -> int:
        return self._store.stats().events

    async def counts(self) -> dict[str, int]:
        stats = self._store.stats()
        return {"users_with_profile": stats.users_with_profile, "users_with_history": stats.users_with_history,
                "events": stats.events}

    def __del__(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()
