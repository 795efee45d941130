"""HTTP request and response models (pydantic): the service's OpenAPI schema.

Ids arrive as strings or ints (sources use both) and are kept as strings. Types are
strict where a silent coercion would hide a client bug (``k: "5"``, ``exclude_purchased:
"no"``). These models hold the fixed rules; ``limited_models`` adds the limits that
depend on the deployment (max k, items per request), so the published schema states
every rule the service enforces and a request the schema allows is never refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
    create_model,
    model_validator,
)

from seqrec_ray.data.catalogue import MAX_ATTRIBUTES, MAX_TEXT_LENGTH
from seqrec_ray.schema import EVENT_TYPES, MAX_ID_LENGTH

MAX_QUERY_LENGTH = 1000


def _integral(value: Any) -> Any:
    # JSON Schema's "integer" is any number without a fraction, so 5.0 is one: take it as 5.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _id_to_str(value: Any) -> Any:
    value = _integral(value)
    # bool is an int subclass, but true/false as an id is a client bug, not an id.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # its length is then held to MAX_ID_LENGTH like any id
    return value


# No bounds on the integer form: OpenAPI states bounds as doubles, inexact past 2**53.
RAW_ID_SCHEMA = {
    "anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}, {"type": "integer"}],
    "description": f"a raw id: a string, or an integer kept as its decimal string (at most {MAX_ID_LENGTH} characters)",
}
RawId = Annotated[
    str, BeforeValidator(_id_to_str), Field(min_length=1, max_length=MAX_ID_LENGTH), WithJsonSchema(RAW_ID_SCHEMA)
]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
Count = Annotated[StrictInt, BeforeValidator(_integral)]  # 5 or 5.0, never "5" or true


class _Strict(BaseModel):
    # Unknown fields are rejected: a misspelt "exclude_purchase" must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class EventIn(_Strict):
    user_id: RawId
    item_id: RawId
    event_type: EventType
    # Strict: a number (int or float), never a bool or a numeric string.
    timestamp: StrictFloat | None = Field(None, ge=0, allow_inf_nan=False, description="seconds; default: time of receipt")
    session_id: RawId | None = None
    category_id: RawId | None = None
    price: StrictFloat | None = Field(None, ge=0, allow_inf_nan=False)
    query: str | None = Field(None, max_length=MAX_QUERY_LENGTH)


Token = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class ItemIn(_Strict):
    """One catalogue row: an item to add, or the new content of a known one."""

    item_id: RawId
    title: str | None = Field(None, max_length=MAX_TEXT_LENGTH)
    category_id: RawId | None = None
    brand: str | None = Field(None, max_length=MAX_ID_LENGTH)
    price: StrictFloat | None = Field(None, ge=0, allow_inf_nan=False)
    attributes: list[Token] | None = Field(None, max_length=MAX_ATTRIBUTES, description="content tokens, e.g. attribute ids")


class RecommendRequest(_Strict):
    user_id: RawId
    k: Count = Field(10, ge=1, description="how many items; at most the service's max_k")
    exclude_purchased: StrictBool = True
    categories: list[RawId] | None = Field(None, min_length=1, description="raw category ids to draw from")


class RankRequest(_Strict):
    user_id: RawId
    items: list[RawId] = Field(min_length=1, description="distinct candidate raw item ids, e.g. search results",
                               json_schema_extra={"uniqueItems": True})
    query: str | None = Field(None, max_length=MAX_QUERY_LENGTH)

    @model_validator(mode="before")
    @classmethod
    def _distinct(cls, data: Any) -> Any:
        # Distinct as JSON values, as the schema's uniqueItems says: "5" and 5 are two items
        # (their ranked entries read the same), 5 and 5.0 one.
        items = data.get("items") if isinstance(data, dict) else None
        if isinstance(items, list) and all(isinstance(i, (str, int, float)) for i in items):
            repeated = sorted(str(item) for item, n in Counter(items).items() if n > 1)
            if repeated:
                raise ValueError(f"items must be distinct; repeated: {repeated[:10]}")
        return data


# A search query: at least one character that is not white space, and no control
# characters (a pasted NUL or escape code is a client bug, not a query).
_NO_CONTROL = r"[^\x00-\x1f\x7f-\x9f]"
SEARCH_QUERY_PATTERN = rf"^{_NO_CONTROL}*[^\s\x00-\x1f\x7f-\x9f]{_NO_CONTROL}*$"


class SearchRequest(_Strict):
    user_id: RawId
    query: str = Field(min_length=1, max_length=MAX_QUERY_LENGTH, pattern=SEARCH_QUERY_PATTERN,
                       description="what the shopper typed: not blank, no control characters")
    k: Count = Field(10, ge=1, description="how many items; at most the service's max_k")
    exclude_purchased: StrictBool = True
    categories: list[RawId] | None = Field(None, min_length=1, description="raw category ids to search in")


@dataclass(frozen=True)
class LimitedModels:
    """The request bodies of one deployment, with its limits in their schema."""

    recommend: type[RecommendRequest]
    rank: type[RankRequest]
    search: type[SearchRequest]


def limited_models(max_k: int, max_items: int, max_categories: int) -> LimitedModels:
    """Request models that also enforce (and publish) the deployment's limits: over a
    limit is a 422 like any other schema violation."""
    recommend = create_model(
        "RecommendRequest", __base__=RecommendRequest, __module__=__name__,
        k=(Count, Field(10, ge=1, le=max_k, description="how many items")),
        categories=(list[RawId] | None, Field(None, min_length=1, max_length=max_categories,
                                              description="raw category ids to draw from")),
    )
    rank = create_model(
        "RankRequest", __base__=RankRequest, __module__=__name__,
        items=(list[RawId], Field(min_length=1, max_length=max_items, json_schema_extra={"uniqueItems": True},
                                  description="distinct candidate raw item ids, e.g. search results")),
    )
    search = create_model(
        "SearchRequest", __base__=SearchRequest, __module__=__name__,
        k=(Count, Field(10, ge=1, le=max_k, description="how many items")),
        categories=(list[RawId] | None, Field(None, min_length=1, max_length=max_categories,
                                              description="raw category ids to search in")),
    )
    return LimitedModels(recommend=recommend, rank=rank, search=search)


class Contribution(BaseModel):
    item_id: str
    event_type: str
    weight: float = Field(description="cosine similarity of the two items' embeddings")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str
    because: list[Contribution]
    new_item: bool = Field(description="posted to /items after the model was trained: scored from its content")


class RecommendResponse(BaseModel):
    user_id: str
    cold_start: bool
    items: list[RecommendedItem]
    model: str


class RankedItem(BaseModel):
    item_id: str
    score: float | None = Field(description="null for an item the model does not know")
    known: bool
    new_item: bool = Field(description="posted to /items after the model was trained: scored from its content")
    discontinued: bool = Field(description="deleted from the catalogue (DELETE /items/{item_id}): never recommended")
    relevance: float | None = Field(None, description=(
        "with a query: how well the item matches it (0 = not at all; matching items come first); null without one"))
    matched_terms: list[str] = Field(default_factory=list, description="the query's words the item matched")


class RankResponse(BaseModel):
    user_id: str
    cold_start: bool
    query: str | None
    items: list[RankedItem]
    model: str


class SearchedItem(BaseModel):
    item_id: str
    score: float = Field(description="query relevance and the user's history together (higher is better)")
    relevance: float = Field(description="how well the item matches the query alone (BM25 and near matches)")
    matched_terms: list[str] = Field(description="the query's words the item matched, exactly or nearly (typos)")
    reason: str
    because: list[Contribution] = Field(description="the history events behind the personal part")
    new_item: bool = Field(description="posted to /items after the model was trained: scored from its content")


class SearchResponse(BaseModel):
    user_id: str
    query: str
    cold_start: bool = Field(description="no history: query relevance with popularity")
    matched: int = Field(description="items that matched the query before filters and k; 0 = nothing matches")
    items: list[SearchedItem]
    model: str


class OutcomeProbability(BaseModel):
    probability: float = Field(description="calibrated on the validation cut-off (0..1)")
    horizon_days: float = Field(description="the window after the prediction time the probability is about")


class PredictionsResponse(BaseModel):
    user_id: str
    at: float = Field(description="the prediction time (seconds since the epoch): only events before it are inputs")
    propensity: OutcomeProbability = Field(description="the user buys something within the horizon")
    churn: OutcomeProbability = Field(description="the user has no event at all within the horizon")
    next_purchase: list[RecommendedItem] = Field(description=(
        "the items the user is likeliest to buy next, best first (the next-purchase head when the model has one)"))
    model: str


class ItemsResponse(BaseModel):
    accepted: int = Field(description="distinct items written (a repeated id counts once: its last row wins)")


class ItemDeletedResponse(BaseModel):
    item_id: str
    discontinued: Literal[True]


class EventsResponse(BaseModel):
    accepted: int
    users: int


class EventOut(BaseModel):
    item_id: str
    event_type: str
    timestamp: float
    category_id: str | None = None


class ProfileResponse(BaseModel):
    user_id: str
    profile: dict[str, Any] | None
    recent_events: list[EventOut]


class StoreCounts(BaseModel):
    users_with_profile: int
    users_with_history: int
    events: int


class VersionResponse(BaseModel):
    model: dict[str, Any]
    vocab: dict[str, Any]
    data_version: str | None
    ranker_checkpoints: list[str]
    live_items: int = Field(description="items posted to /items that the served checkpoint was not trained on")
    store: StoreCounts


class ForgetResponse(BaseModel):
    user_id: str
    forgotten: Literal[True]
    events_removed: int = Field(description="events deleted from the user's history (0 for a user never seen)")


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="where: e.g. [\"body\", \"k\"] or [\"path\", \"user_id\"]")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The body of every 4xx (and 5xx) this service answers."""

    detail: str = Field(description="one readable line naming the problem")
    errors: list[ErrorItem] = Field(description="one entry per bad field (validation errors); empty otherwise")


def error_body(detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An ``ErrorResponse`` as JSON-able dict (for the ASGI guards, which answer before FastAPI)."""
    return ErrorResponse(detail=detail, errors=errors or []).model_dump()

