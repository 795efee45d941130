"""HTTP ingress: the deployment behind the routes (api.py), chaining ProfileFetcher ->
UserEncoder -> Ranker, with the Retriever (search) beside the encoder for /search.

Every downstream call is awaited through its DeploymentHandle (never ``.result()``), so
one ingress replica keeps many requests in flight while the encoder batches them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.schema import LoggingConfig

from .api import NO_OUTCOME_HEADS, NO_SEARCH_INDEX, build_http_app
from .batching import GatedBatcher
from .config import ServeConfig
from .privacy import read_api_key
from .ranking import SearchQuery, recommend_query
from .schemas import (
    EventIn,
    EventsResponse,
    ForgetResponse,
    HealthResponse,
    ItemDeletedResponse,
    ItemIn,
    ItemsResponse,
    PredictionsResponse,
    ProfileResponse,
    RankRequest,
    RankResponse,
    RecommendRequest,
    RecommendResponse,
    SearchRequest,
    SearchResponse,
    StoreCounts,
    VersionResponse,
)

RECENT_EVENTS_SHOWN = 20
logger = logging.getLogger("ray.serve")


# Serve's per-request access log is off (``ServeConfig.log_user_ids`` turns it back on,
# app.py). Ray 2.60 writes the matched route pattern there (/users/{user_id}/profile), not
# the raw path, but that is Serve's choice to keep, and with RAY_SERVE_LOG_CLIENT_ADDRESS=1
# each line also holds the client's address. The proxy's own access line is configured by
# serve.start / the config file's logging_config, not here (it too shows the pattern).
# A roll-out that replaces every stage (new code, or serve.run from Python) stops the old
# ingress while its requests wait on downstream replicas that are still starting (22 s on a
# busy 2-core box, past Serve's default 20 s grace): it may take a minute to drain them.
@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256,
                  logging_config=LoggingConfig(enable_access_log=False), graceful_shutdown_timeout_s=90)
@serve.ingress()
class Ingress:
    def __init__(
        self, fetcher: DeploymentHandle, encoder: DeploymentHandle, ranker: DeploymentHandle,
        retriever: DeploymentHandle, config: ServeConfig,
    ) -> None:
        self._fetcher, self._encoder, self._ranker, self._retriever = fetcher, encoder, ranker, retriever
        self._config = config
        self._api_key = read_api_key(config)  # here, in the replica: never in the config
        self._recommend_batcher = GatedBatcher(
            self._recommend_batch, config.ingress_batch_size, config.ingress_batches_in_flight
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_http_app(self, self._config, self._api_key)

    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        return await self._recommend_batcher.submit(req)

    async def _recommend_batch(self, reqs: list[RecommendRequest]) -> list[RecommendResponse]:
        """Concurrent /recommend requests (already validated) travel the chain together:
        one fetcher, one encoder and one ranker call per batch instead of per request.
        Nothing waits for a batch to fill: requests that queue while a batch is in flight
        form the next one (GatedBatcher), so batches form exactly when they pay."""
        contexts = await self._fetcher.fetch_many.remote([r.user_id for r in reqs])
        histories = [ctx["history"] for ctx in contexts]
        warm = [i for i, history in enumerate(histories) if history]  # the rest are cold starts
        encoded = await self._encoder.encode_many.remote([histories[i] for i in warm]) if warm else []
        vectors: dict[int, dict[str, Any]] = dict(zip(warm, encoded))
        queries = []
        for i, (r, h) in enumerate(zip(reqs, histories)):
            enc = vectors.get(i, {})
            query = recommend_query(r.k, h, r.exclude_purchased, r.categories, enc.get("vector"), enc.get("used", 0))
            queries.append({"query": query, "checkpoint": enc.get("checkpoint")})
        results = await self._ranker.recommend_many.remote(queries)
        return [
            RecommendResponse(user_id=r.user_id, cold_start=not h, items=res["items"], model=res["model"])
            for r, h, res in zip(reqs, histories, results)
        ]

    async def rank(self, req: RankRequest) -> RankResponse:
        history = (await self._fetcher.fetch.remote(req.user_id))["history"]
        query: dict[str, Any] = {"items": req.items}
        encoding = self._encoder.encode.remote(history) if history else None
        if req.query:  # the query orders the items that match it first (when the model has an index)
            query["text"] = req.query  # and a query-aware model scores them with it
            retrieved = await self._retriever.retrieve.remote(req.query, len(req.items), list(req.items))
            query["matches"] = retrieved["matches"] if retrieved["available"] else None
        if encoding is not None:
            encoded = await encoding
            query.update(vector=encoded["vector"], checkpoint=encoded["checkpoint"])
        result = await self._ranker.rank.remote(query)
        return RankResponse(user_id=req.user_id, cold_start=not history, query=req.query,
                            items=result["items"], model=result["model"])

    async def search(self, req: SearchRequest) -> SearchResponse:
        """Fetcher (history) -> retriever (matches) and encoder (user vector) side by side -> ranker."""
        history = (await self._fetcher.fetch.remote(req.user_id))["history"]
        encoding = self._encoder.encode.remote(history) if history else None
        retrieved = await self._retriever.retrieve.remote(req.query, self._config.search_candidates)
        if not retrieved["available"]:
            raise HTTPException(404, NO_SEARCH_INDEX)
        encoded = await encoding if encoding is not None else {}
        base = recommend_query(req.k, history, req.exclude_purchased, req.categories, encoded.get("vector"),
                               encoded.get("used", 0))
        query = SearchQuery(base=base, matches=tuple(retrieved["matches"]), text=req.query)
        result = await self._ranker.search.remote({"query": query, "checkpoint": encoded.get("checkpoint")})
        return SearchResponse(user_id=req.user_id, query=req.query, cold_start=not history,
                              matched=len(retrieved["matches"]), items=result["items"], model=result["model"])

    async def post_events(self, events: list[EventIn]) -> EventsResponse:
        now = time.time()
        rows = [{**e.model_dump(), "timestamp": now if e.timestamp is None else e.timestamp} for e in events]
        accepted = await self._fetcher.append.remote(rows)
        return EventsResponse(accepted=accepted, users=len({e.user_id for e in events}))

    async def profile(self, user_id: str) -> ProfileResponse:
        ctx = await self._fetcher.fetch.remote(user_id)
        if ctx["profile"] is None and not ctx["history"]:
            raise HTTPException(404, f"unknown user {user_id!r}: no profile and no events")
        return ProfileResponse(user_id=user_id, profile=ctx["profile"], recent_events=ctx["history"][-RECENT_EVENTS_SHOWN:])

    async def predictions(self, user_id: str, k: int, at: float | None) -> PredictionsResponse:
        """Fetcher (history) -> encoder (heads: probabilities and the next-purchase vector) -> ranker."""
        at = time.time() if at is None else at
        history = [e for e in (await self._fetcher.fetch.remote(user_id))["history"] if e["timestamp"] < at]
        if not history:
            raise HTTPException(404, f"unknown user {user_id!r}: no events before {at:.0f}")
        predicted = await self._encoder.predict.remote(history, at)
        if not predicted["available"]:
            raise HTTPException(404, NO_OUTCOME_HEADS)
        query = recommend_query(k, history, False, None, predicted["vector"], predicted["used"])
        ranked = (await self._ranker.recommend_many.remote([{"query": query, "checkpoint": predicted["checkpoint"]}]))[0]
        return PredictionsResponse(user_id=user_id, at=at, propensity=predicted["purchase"], churn=predicted["churn"],
                                   next_purchase=ranked["items"], model=ranked["model"])

    async def forget(self, user_id: str) -> ForgetResponse:
        removed = await self._fetcher.forget.remote(user_id)
        return ForgetResponse(user_id=user_id, forgotten=True, events_removed=removed)

    async def post_items(self, items: list[ItemIn]) -> ItemsResponse:
        rows = [item.model_dump() for item in items]
        return ItemsResponse(accepted=await self._fetcher.put_items.remote(rows))

    async def delete_item(self, item_id: str) -> ItemDeletedResponse:
        await self._fetcher.delete_items.remote([item_id])
        return ItemDeletedResponse(item_id=item_id, discontinued=True)

    async def health(self) -> HealthResponse:
        """Every stage answers; what they hold (paths, counts) is for /version, behind the key."""
        try:
            await asyncio.gather(self._fetcher.ping.remote(), self._encoder.version.remote(), self._ranker.version.remote(),
                                 self._retriever.version.remote())
        except Exception:
            logger.exception("health check: a stage did not answer")
            return HealthResponse(status="unavailable")
        return HealthResponse(status="ok")

    async def version(self) -> VersionResponse:
        encoder, ranker, counts = await asyncio.gather(
            self._encoder.version.remote(), self._ranker.version.remote(), self._fetcher.counts.remote()
        )
        return VersionResponse(model=encoder, vocab=encoder["vocab"], data_version=encoder.get("data_version"),
                               ranker_checkpoints=ranker["loaded"], live_items=ranker["live_items"],
                               store=StoreCounts(**counts))
