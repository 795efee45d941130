"""UserEncoder deployment: stored histories -> user vectors, batched across requests."""

from __future__ import annotations

import logging
from typing import Any

import torch
from ray import serve

from .config import ServeConfig, resolve_device
from .live_items import sync_catalogue
from .model import ServingModel, encode_histories, load_serving_model, predict_outcomes

logger = logging.getLogger("ray.serve")


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class UserEncoder:
    """Holds one checkpoint; ``reconfigure({"checkpoint": path})`` swaps it in place.

    A swap loads the new model fully before replacing the old one, so requests in flight
    finish on the model they started with and none fails during a roll-out.
    """

    def __init__(self, config: ServeConfig) -> None:
        from seqrec_ray.store import open_store

        self._config = config
        self._store = open_store(config.store)  # its item log: histories may hold live items
        self._device = resolve_device(config.device)
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        self._model: ServingModel = load_serving_model(config.checkpoint, self._device)
        self.encode.set_max_batch_size(config.encoder_batch_size)
        self.encode.set_batch_wait_timeout_s(config.batch_wait_s)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        path = (user_config or {}).get("checkpoint")
        if path and str(path) != self._model.key:
            self._model = load_serving_model(str(path), self._device)
            logger.info("UserEncoder now serves %s", self._model.key)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def encode(self, histories: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """One call per user; Serve gathers concurrent calls into ``histories``."""
        return self._encode(histories)

    async def encode_many(self, histories: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """A batch the caller already gathered (the ingress batches /recommend): one hop for all."""
        return self._encode(histories) if histories else []

    def _encode(self, histories: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        model = self._model  # the whole batch uses one model even if a swap lands meanwhile
        model.apply(sync_catalogue(self._store, model.catalogue))
        vectors = encode_histories(model, histories)  # (B, D)
        # ``used``: how many of the latest events the model saw (for the ranker's reasons).
        return [
            {"vector": v, "checkpoint": model.key, "used": min(len(h), model.max_len)}
            for v, h in zip(vectors, histories)
        ]

    async def predict(self, history: list[dict[str, Any]], at: float) -> dict[str, Any]:
        """Propensity, churn risk and the next-purchase vector of one user (model.predict_outcomes)."""
        model = self._model
        model.apply(sync_catalogue(self._store, model.catalogue))
        return predict_outcomes(model, history, at)

    def version(self) -> dict[str, Any]:
        return {**self._model.info, "device": self._device}
