"""Retriever deployment: the search stage, a query -> candidate items with their relevance.

Each replica holds a private, writable copy of its checkpoint's search index
(``data/search_index.py``) and replays the store's item log into it before it answers,
as the encoder and ranker replay it into their item tables: an item posted to /items is
searchable by the next request, a discontinued one is gone, on every replica.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray import serve

from seqrec_ray.data.search_index import SearchIndex, has_search_index

from .config import ServeConfig

logger = logging.getLogger("ray.serve")


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class Retriever:
    """``reconfigure({"checkpoint": path})`` switches to that checkpoint's index."""

    def __init__(self, config: ServeConfig) -> None:
        from seqrec_ray.store import open_store

        self._config = config
        self._store = open_store(config.store)
        self._key: str | None = None
        self._index: SearchIndex | None = None
        self._seq = 0
        self._load(config.checkpoint)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        path = (user_config or {}).get("checkpoint")
        if path and str(Path(path).expanduser().resolve()) != self._key:
            self._load(str(path))
            logger.info("Retriever now searches %s", self._key)

    def _load(self, path: str) -> None:
        key = str(Path(path).expanduser().resolve())
        index = SearchIndex(key) if has_search_index(key) else None
        old, self._index, self._key, self._seq = self._index, index, key, 0
        if old is not None:
            old.close()

    def _sync(self) -> None:
        """Apply the store's item updates newer than the last one applied (one cheap read
        when there are none)."""
        if self._index is None or self._store.latest_item_seq() <= self._seq:
            return
        updates = self._store.item_updates(self._seq)
        self._index.upsert([u.item for u in updates if u.item is not None])
        self._index.delete([u.item_id for u in updates if u.item is None])
        self._seq = max([self._seq, *(int(u.seq) for u in updates)])

    async def retrieve(self, query: str, limit: int, within: list[str] | None = None) -> dict[str, Any]:
        """``{"available": False}`` for a checkpoint without a search index, else the best
        ``limit`` matches (``within``: among these item ids only), best first."""
        if self._index is None:
            return {"available": False, "matches": []}
        self._sync()
        matches = self._index.search(query, limit, within)
        return {"available": True, "matches": [
            {"item_id": m.item_id, "relevance": m.relevance, "matched_terms": list(m.matched_terms)} for m in matches]}

    def version(self) -> dict[str, Any]:
        return {"checkpoint": self._key, "documents": None if self._index is None else self._index.documents}
