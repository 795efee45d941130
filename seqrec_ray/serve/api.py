"""The HTTP API: FastAPI routes over the Ingress, their OpenAPI schema and error bodies.

The published schema (``/openapi.json``) is the contract, checked by a fuzzer in
tests/test_api_contract.py: a request the schema allows is never refused, one it forbids
is a 4xx, and every status a route can answer is declared on it with its body. Every
error body is one model, ``ErrorResponse`` (``detail`` + per-field ``errors``), whoever
answers: the validation and HTTP-exception handlers below or the ASGI guards
(middleware.py). The deployment's limits (max k, items, events, categories) are in the
request schemas, so going over one is a 422 like any other schema violation; 413 is
kept for a body over ``max_body_bytes``.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run
# time, and the request models are built per deployment (they carry its limits).

from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Body, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from seqrec_ray.schema import MAX_ID_LENGTH
from seqrec_ray.train import outcomes

from .config import ServeConfig
from .middleware import API_KEY_HEADER, ApiKeyMiddleware, BodyLimitMiddleware
from .schemas import (
    ErrorResponse,
    EventIn,
    EventsResponse,
    ForgetResponse,
    HealthResponse,
    ItemDeletedResponse,
    ItemIn,
    ItemsResponse,
    PredictionsResponse,
    ProfileResponse,
    RankResponse,
    RecommendResponse,
    SearchResponse,
    VersionResponse,
    error_body,
    limited_models,
)

API_VERSION = "1"  # the HTTP contract's version (docs/contracts.md §7), not a package's
ERROR_DESCRIPTIONS = {
    400: "unreadable request framing (e.g. a Content-Length that is not a number)",
    401: "missing or wrong API key",
    404: "no such route (e.g. an id such as '..' that a client rewrites out of the path)",
    413: "request body over the service's max_body_bytes",
    422: "invalid request: the schema's rules, including the service's limits",
}
BODY_ERRORS = (400, 413, 422)
NO_OUTCOME_HEADS = f"the served model has {outcomes.NO_OUTCOME_HEADS}"
MAX_PREDICTION_TIME = 4_102_444_800.0  # 2100-01-01, as the event validation's default upper bound
NO_SEARCH_INDEX = ("the served model has no search index (featurize with --items, or a log whose events "
                   "carry queries, then train)")


class Service(Protocol):
    """What the routes call (the Ingress deployment)."""

    async def recommend(self, req: Any) -> RecommendResponse: ...
    async def rank(self, req: Any) -> RankResponse: ...
    async def search(self, req: Any) -> SearchResponse: ...
    async def post_events(self, events: list[EventIn]) -> EventsResponse: ...
    async def profile(self, user_id: str) -> ProfileResponse: ...
    async def predictions(self, user_id: str, k: int, at: float | None) -> PredictionsResponse: ...
    async def forget(self, user_id: str) -> ForgetResponse: ...
    async def post_items(self, items: list[ItemIn]) -> ItemsResponse: ...
    async def delete_item(self, item_id: str) -> ItemDeletedResponse: ...
    async def health(self) -> HealthResponse: ...
    async def version(self) -> VersionResponse: ...


def build_http_app(service: Service, config: ServeConfig, api_key: str | None) -> FastAPI:
    """The routes, their OpenAPI schema, one error body for every 4xx, and the ASGI guards."""
    app = FastAPI(title="seqrec-ray", version=API_VERSION,
                  description="Sequence-model recommendations and personalised ranking")
    add_error_handlers(app)
    auth = _documented_auth() if api_key else []
    errors = _error_responses(401 if api_key else None)
    _add_ranking_routes(app, service, config, auth, errors)
    _add_user_routes(app, service, config.max_k, auth, errors)
    _add_item_routes(app, service, config, auth, errors)

    @app.get("/healthz", operation_id="health", response_model=HealthResponse,
             responses={503: {"model": HealthResponse, "description": "a stage is not answering"}})
    async def health() -> JSONResponse:
        """Liveness of the whole chain, for load balancers (needs no key, says nothing else)."""
        body = await service.health()
        return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)

    @app.get("/version", operation_id="version", response_model=VersionResponse, responses=errors(),
             dependencies=auth)
    async def version() -> VersionResponse:
        """The served checkpoint, vocabulary and data version, and the store's counts."""
        return await service.version()

    # Added last = runs first: the key is checked before any body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    return app


def _add_ranking_routes(app: FastAPI, service: Service, config: ServeConfig, auth: list, errors: Callable) -> None:
    models = limited_models(config.max_k, config.max_items, config.max_categories)
    recommend_in, rank_in, search_in = models.recommend, models.rank, models.search
    events_in = Annotated[list[EventIn], Body(min_length=1, max_length=config.max_events,
                                              description="events to append, at most the service's max_events")]
    # The users an events request names can be read and forgotten (OpenAPI links).
    events_links = {200: {"links": {
        "GetProfile": {"operationId": "get_profile", "parameters": {"user_id": "$request.body#/0/user_id"}},
        "ForgetUser": {"operationId": "forget_user", "parameters": {"user_id": "$request.body#/0/user_id"}},
    }}}

    @app.post("/recommend", operation_id="recommend", response_model=RecommendResponse,
              responses=errors(*BODY_ERRORS), dependencies=auth)
    async def recommend(req: recommend_in) -> RecommendResponse:
        """Top-k items for the user, each with the history events that explain it."""
        return await service.recommend(req)

    @app.post("/rank", operation_id="rank", response_model=RankResponse, responses=errors(*BODY_ERRORS),
              dependencies=auth)
    async def rank(req: rank_in) -> RankResponse:
        """Exactly the given items (e.g. search results), re-ranked for the user."""
        return await service.rank(req)

    @app.post("/search", operation_id="search", response_model=SearchResponse,
              responses=errors(*BODY_ERRORS, 404, notes={404: NO_SEARCH_INDEX}), dependencies=auth)
    async def search(req: search_in) -> SearchResponse:
        """Products for the query, ranked with the user's history: each with the query words
        it matched and the events behind it. Nothing matches: an empty list, never fillers."""
        return await service.search(req)

    @app.post("/events", operation_id="post_events", response_model=EventsResponse,
              responses={**errors(*BODY_ERRORS), **events_links}, dependencies=auth)
    async def post_events(events: events_in) -> EventsResponse:
        """Append events to users' histories; answered once the store has committed them."""
        return await service.post_events(events)


def _add_user_routes(app: FastAPI, service: Service, max_k: int, auth: list, errors: Callable) -> None:
    # An id is one path segment: one holding '/' (even sent as %2F) reaches no route, a 404.
    user_id_in = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="raw user id")]
    k_in = Annotated[int, Query(ge=1, le=max_k, description="next-purchase items to return")]
    at_in = Annotated[float | None, Query(ge=0, le=MAX_PREDICTION_TIME, allow_inf_nan=False, description=(
        "prediction time, seconds since the epoch (default: now); events at or after it are ignored"))]
    same_user = {"user_id": "$response.body#/user_id"}

    @app.get("/users/{user_id}/profile", operation_id="get_profile", response_model=ProfileResponse,
             responses={**errors(404, 422, notes={404: "unknown user: no profile and no events (or no such route)"}),
                        200: {"links": {"ForgetUser": {"operationId": "forget_user", "parameters": same_user}}}},
             dependencies=auth)
    async def profile(user_id: user_id_in) -> ProfileResponse:
        """The user's stored profile and most recent events; 404 for a user with neither."""
        return await service.profile(user_id)

    @app.get("/users/{user_id}/predictions", operation_id="get_predictions", response_model=PredictionsResponse,
             responses=errors(404, 422, notes={404: f"unknown user (no events before the prediction time), or "
                                                    f"{NO_OUTCOME_HEADS}"}),
             dependencies=auth)
    async def predictions(user_id: user_id_in, k: k_in = 10, at: at_in = None) -> PredictionsResponse:
        """The user's calibrated purchase propensity and churn risk, and the top-k items they
        are likeliest to buy next, from the events before ``at`` (default: now)."""
        return await service.predictions(user_id, k, at)

    @app.delete("/users/{user_id}", operation_id="forget_user", response_model=ForgetResponse,
                responses={**errors(404, 422),
                           200: {"links": {"GetProfile": {"operationId": "get_profile", "parameters": same_user}}}},
                dependencies=auth)
    async def forget(user_id: user_id_in) -> ForgetResponse:
        """Delete everything stored about the user (profile and history) and record that
        it was done. Afterwards the user is unknown (the profile is a 404, /recommend a
        cold start) and later events start a new history. An unknown user is a 200 too."""
        return await service.forget(user_id)


def _add_item_routes(app: FastAPI, service: Service, config: ServeConfig, auth: list, errors: Callable) -> None:
    items_in = Annotated[list[ItemIn], Body(min_length=1, max_length=config.max_posted_items,
                                            description="catalogue rows, at most the service's max_posted_items")]
    item_id_in = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="raw item id")]

    @app.post("/items", operation_id="post_items", response_model=ItemsResponse, responses=errors(*BODY_ERRORS),
              dependencies=auth)
    async def post_items(items: items_in) -> ItemsResponse:
        """Add products to the catalogue, or replace a product's content. Answered once the
        store has committed them; from the next request on they are scored from their
        content and recommendable (``new_item: true``), with no retraining or restart."""
        return await service.post_items(items)

    @app.delete("/items/{item_id}", operation_id="delete_item", response_model=ItemDeletedResponse,
                responses=errors(422), dependencies=auth)
    async def delete_item(item_id: item_id_in) -> ItemDeletedResponse:
        """Stop recommending a product (discontinued); posting it again brings it back.
        /rank still scores it when asked, flagged ``discontinued``."""
        return await service.delete_item(item_id)


def _error_responses(auth_status: int | None) -> Callable[..., dict[int | str, dict[str, Any]]]:
    """``errors(404, 422, notes=...)``: those statuses (and 401 with a key) as ErrorResponse."""

    def errors(*codes: int, notes: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
        described = {**ERROR_DESCRIPTIONS, **(notes or {})}
        codes = codes + ((auth_status,) if auth_status else ())
        return {code: {"model": ErrorResponse, "description": described[code]} for code in sorted(codes)}

    return errors


def _documented_auth() -> list[Any]:
    # ApiKeyMiddleware does the checking (before any body is read); these dependencies only
    # publish the two accepted forms as security schemes, either one sufficing.
    return [Security(APIKeyHeader(name=API_KEY_HEADER, scheme_name="ApiKey", auto_error=False)),
            Security(HTTPBearer(scheme_name="Bearer", auto_error=False))]


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable line naming each bad field (and no echo of the input)."""
    errors = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            msg = f"malformed JSON: {(err.get('ctx') or {}).get('error', msg)}"
        loc = [part if isinstance(part, int) else str(part) for part in err.get("loc", ())]
        errors.append({"loc": loc, "msg": msg, "type": str(err.get("type", "invalid"))})
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or "invalid request"
    return JSONResponse(error_body(detail, errors), status_code=422)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Our HTTPExceptions and Starlette's own (404 no such route, 405 with its Allow header)."""
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    # The message may hold request data: it goes to the replica's log (Starlette re-raises
    # after answering), never to the client.
    return JSONResponse(error_body("internal error"), status_code=500)
