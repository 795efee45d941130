"""Ranker deployment: user vector -> top-k over the catalogue, or a re-ranked candidate list."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from ray import serve

from .config import ServeConfig, resolve_device
from .live_items import sync_catalogue
from .model import load_serving_model
from .ranking import RankerModel, rank_items, recommend_batch, search_items

logger = logging.getLogger("ray.serve")

# Checkpoints kept loaded: the current one and the one before it, so requests encoded by
# an encoder replica that has not yet switched during a roll-out still rank consistently.
KEEP_MODELS = 2


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class Ranker:
    """Scores with the item table of the same checkpoint the user vector came from, kept in
    step with the store's live catalogue (items posted or discontinued since it loaded)."""

    def __init__(self, config: ServeConfig) -> None:
        from seqrec_ray.store import open_store

        self._config = config
        self._store = open_store(config.store)
        self._device = resolve_device(config.device)
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        self._models: OrderedDict[str, RankerModel] = OrderedDict()
        self._current = self._load(config.checkpoint)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        path = (user_config or {}).get("checkpoint")
        if path:
            self._current = self._load(str(path))
            logger.info("Ranker now serves %s", self._current.key)

    def _load(self, path: str) -> RankerModel:
        key = str(load_key(path))
        if key not in self._models:
            serving = load_serving_model(path, self._device)
            self._models[key] = RankerModel.from_serving(serving, self._config.score_dtype, self._config.new_item_boost)
        self._models.move_to_end(key)
        while len(self._models) > KEEP_MODELS:
            self._models.popitem(last=False)
        return self._models[key]

    def _model_for(self, checkpoint: str | None) -> RankerModel:
        # A vector from a checkpoint this replica has not loaded yet (the encoder switched
        # first): load it on demand rather than score it against the wrong item table.
        if checkpoint is None or checkpoint == self._current.key:
            model = self._current
        else:
            model = self._models.get(checkpoint) or self._load(checkpoint)
        model.apply(sync_catalogue(self._store, model.catalogue))
        return model

    async def recommend_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A batch of requests the ingress gathered, scored in one pass per checkpoint.
        Each request: ``{"query": RecommendQuery, "checkpoint": key or None (cold start)}``."""
        groups: dict[str, tuple[RankerModel, list[int]]] = {}
        for i, r in enumerate(requests):
            model = self._model_for(r.get("checkpoint"))
            groups.setdefault(model.key, (model, []))[1].append(i)
        out: list[dict[str, Any]] = [{}] * len(requests)
        for model, members in groups.values():
            queries = [requests[i]["query"] for i in members]
            for i, items in zip(members, recommend_batch(model, queries, self._config.reasons_per_item)):
                out[i] = {"items": items, "model": model.label}
        return out

    async def rank(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"items", "vector"?, "checkpoint"?, "matches"?, "text"?}``: matches are the
        retriever's for the request's query ``text`` (None without one)."""
        model = self._model_for(request.get("checkpoint"))
        items = rank_items(model, request.get("vector"), request["items"], request.get("matches"),
                           self._config.search_relevance_weight, request.get("text", ""))
        return {"items": items, "model": model.label}

    async def search(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"query": SearchQuery, "checkpoint": key or None (no history)}``."""
        model = self._model_for(request.get("checkpoint"))
        items = search_items(model, request["query"], self._config.search_relevance_weight,
                             self._config.reasons_per_item)
        return {"items": items, "model": model.label}

    def version(self) -> dict[str, Any]:
        self._model_for(None)  # the live-item count as of now
        return {"current": self._current.key, "loaded": list(self._models), "device": self._device,
                "live_items": self._current.catalogue.live_items}


def load_key(path: str) -> str:
    return str(Path(path).expanduser().resolve())

