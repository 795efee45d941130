"""HTTP ingress: FastAPI routes that chain ProfileFetcher -> UserEncoder -> Ranker.

Every downstream call is awaited through its DeploymentHandle (never ``.result()``), so
one ingress replica keeps many requests in flight while the encoder batches them.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from .batching import GatedBatcher
from .config import ServeConfig
from .middleware import ApiKeyMiddleware, BodyLimitMiddleware
from .ranking import recommend_query
from .schemas import (
    EventIn,
    EventsResponse,
    ProfileResponse,
    RankRequest,
    RankResponse,
    RecommendRequest,
    RecommendResponse,
    VersionResponse,
)

API_KEY_ENV = "SEQREC_API_KEY"
RECENT_EVENTS_SHOWN = 20


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    def __init__(
        self, fetcher: DeploymentHandle, encoder: DeploymentHandle, ranker: DeploymentHandle, config: ServeConfig
    ) -> None:
        self._fetcher, self._encoder, self._ranker = fetcher, encoder, ranker
        self._config = config
        # The key may come from the replica's environment when the config leaves it out.
        self._api_key = config.api_key or os.environ.get(API_KEY_ENV) or None
        self._recommend_batcher = GatedBatcher(
            self._recommend_batch, config.ingress_batch_size, config.ingress_batches_in_flight
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_http_app(self, self._config, self._api_key)

    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        _check_limit("k", req.k, self._config.max_k, 422)
        _check_limit("categories", len(req.categories or ()), self._config.max_categories, 413)
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
        _check_limit("items", len(req.items), self._config.max_items, 413)
        duplicates = sorted(item for item, n in Counter(req.items).items() if n > 1)
        if duplicates:
            raise HTTPException(422, f"items must be distinct; repeated: {duplicates[:10]}")
        history = (await self._fetcher.fetch.remote(req.user_id))["history"]
        query: dict[str, Any] = {"items": req.items}
        if history:
            encoded = await self._encoder.encode.remote(history)
            query.update(vector=encoded["vector"], checkpoint=encoded["checkpoint"])
        result = await self._ranker.rank.remote(query)
        return RankResponse(user_id=req.user_id, cold_start=not history, query=req.query,
                            items=result["items"], model=result["model"])

    async def post_events(self, events: list[EventIn]) -> EventsResponse:
        if not events:
            raise HTTPException(422, "events: send at least one event")
        _check_limit("events", len(events), self._config.max_events, 413)
        now = time.time()
        rows = [{**e.model_dump(), "timestamp": now if e.timestamp is None else e.timestamp} for e in events]
        accepted = await self._fetcher.append.remote(rows)
        return EventsResponse(accepted=accepted, users=len({e.user_id for e in events}))

    async def profile(self, user_id: str) -> ProfileResponse:
        ctx = await self._fetcher.fetch.remote(user_id)
        if ctx["profile"] is None and not ctx["history"]:
            raise HTTPException(404, f"unknown user {user_id!r}: no profile and no events")
        return ProfileResponse(user_id=user_id, profile=ctx["profile"], recent_events=ctx["history"][-RECENT_EVENTS_SHOWN:])

    async def health(self) -> dict[str, Any]:
        events = await self._fetcher.ping.remote()
        encoder = await self._encoder.version.remote()
        ranker = await self._ranker.version.remote()
        return {"status": "ok", "store_events": events, "encoder": encoder["checkpoint"], "ranker": ranker["current"]}

    async def version(self) -> VersionResponse:
        encoder = await self._encoder.version.remote()
        ranker = await self._ranker.version.remote()
        return VersionResponse(model=encoder, vocab=encoder["vocab"], data_version=encoder.get("data_version"),
                               ranker_checkpoints=ranker["loaded"])


def build_http_app(service: Ingress, config: ServeConfig, api_key: str | None) -> FastAPI:
    """The routes, their OpenAPI schema, readable 4xx errors and the ASGI guards."""
    app = FastAPI(title="seqrec-ray", description="Sequence-model recommendations and personalised ranking")
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(req: RecommendRequest) -> RecommendResponse:
        """Top-k items for the user, each with the history events that explain it."""
        return await service.recommend(req)

    @app.post("/rank", response_model=RankResponse)
    async def rank(req: RankRequest) -> RankResponse:
        """Exactly the given items (e.g. search results), re-ranked for the user."""
        return await service.rank(req)

    @app.post("/events", response_model=EventsResponse)
    async def post_events(events: Annotated[list[EventIn], Body()]) -> EventsResponse:
        """Append events to users' histories; answered once the store has committed them."""
        return await service.post_events(events)

    @app.get("/users/{user_id}/profile", response_model=ProfileResponse)
    async def profile(user_id: str) -> ProfileResponse:
        return await service.profile(user_id)

    @app.get("/healthz")
    async def health() -> dict[str, Any]:
        return await service.health()

    @app.get("/version", response_model=VersionResponse)
    async def version() -> VersionResponse:
        return await service.version()

    # Added last = runs first: the key is checked before any body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    return app


def _check_limit(name: str, value: int, limit: int, status: int) -> None:
    if value > limit:
        raise HTTPException(status, f"{name}: {value} is over this service's limit of {limit}")


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable line naming each bad field (and no echo of the input)."""
    errors = []
    for err in exc.errors():
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            msg = f"malformed JSON: {(err.get('ctx') or {}).get('error', msg)}"
        errors.append({"loc": list(err.get("loc", ())), "msg": msg, "type": err.get("type")})
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
