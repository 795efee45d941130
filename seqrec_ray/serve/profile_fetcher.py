"""ProfileFetcher deployment: the only stage that touches the profile/history store."""

from __future__ import annotations

from typing import Any

from ray import serve

from seqrec_ray.store.base import StoredEvent

from .config import ServeConfig


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

    async def ping(self) -> int:
        return self._store.stats().events

    def __del__(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()
