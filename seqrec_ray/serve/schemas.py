"""HTTP request and response models (pydantic): the service's OpenAPI schema.

Ids arrive as strings or ints (sources use both) and are kept as strings. Types are
strict where a silent coercion would hide a client bug (``k: "5"``, ``exclude_purchased:
"no"``). Limits that depend on the deployment (max k, items per request) are checked by
the ingress against ``ServeConfig``; these models hold the fixed rules.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from seqrec_ray.schema import EVENT_TYPES

MAX_ID_LENGTH = 256
MAX_QUERY_LENGTH = 1000


def _id_to_str(value: Any) -> Any:
    # bool is an int subclass, but true/false as an id is a client bug, not an id.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


RawId = Annotated[str, BeforeValidator(_id_to_str), Field(min_length=1, max_length=MAX_ID_LENGTH)]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class _Strict(BaseModel):
    # Unknown fields are rejected: a misspelt "exclude_purchase" must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class EventIn(_Strict):
    user_id: RawId
    item_id: RawId
    event_type: EventType
    timestamp: float | None = Field(None, ge=0, allow_inf_nan=False, description="seconds; default: time of receipt")
    session_id: RawId | None = None
    category_id: RawId | None = None
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    query: str | None = Field(None, max_length=MAX_QUERY_LENGTH)


class RecommendRequest(_Strict):
    user_id: RawId
    k: StrictInt = Field(10, ge=1, description="how many items; at most the service's max_k")
    exclude_purchased: StrictBool = True
    categories: list[RawId] | None = Field(None, min_length=1, description="raw category ids to draw from")


class RankRequest(_Strict):
    user_id: RawId
    items: list[RawId] = Field(min_length=1, description="candidate raw item ids, e.g. search results")
    query: str | None = Field(None, max_length=MAX_QUERY_LENGTH)


class Contribution(BaseModel):
    item_id: str
    event_type: str
    weight: float = Field(description="cosine similarity of the two items' embeddings")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str
    because: list[Contribution]


class RecommendResponse(BaseModel):
    user_id: str
    cold_start: bool
    items: list[RecommendedItem]
    model: str


class RankedItem(BaseModel):
    item_id: str
    score: float | None = Field(description="null for an item the model does not know")
    known: bool


class RankResponse(BaseModel):
    user_id: str
    cold_start: bool
    query: str | None
    items: list[RankedItem]
    model: str


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


class VersionResponse(BaseModel):
    model: dict[str, Any]
    vocab: dict[str, Any]
    data_version: str | None
    ranker_checkpoints: list[str]

