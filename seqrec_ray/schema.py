"""The event-log schema every reader produces and every later stage consumes.

Raw ids (user, item, session, category) are kept as strings: sources mix ints and
strings, and a string id round-trips through every store and HTTP payload unchanged.
Timestamps are float seconds since the Unix epoch (sources without wall-clock time,
such as S3-Rec sequence files, use the event's position).

Readers never drop a row: a row they cannot parse comes out with its fields as far as
they could be read and a non-null ``invalid_reason``; featurization quarantines it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1

USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
TIMESTAMP = "timestamp"
SESSION_ID = "session_id"
CATEGORY_ID = "category_id"
PRICE = "price"
QUERY = "query"
INVALID_REASON = "invalid_reason"

REQUIRED_COLUMNS = (USER_ID, ITEM_ID, EVENT_TYPE, TIMESTAMP)

# The longest raw id (user, item, session, category) anywhere: featurize rejects longer
# ones (reason ID_TOO_LONG) and the HTTP API answers 422, so an id accepted in one place
# is accepted in every other.
MAX_ID_LENGTH = 256
OPTIONAL_COLUMNS = (SESSION_ID, CATEGORY_ID, PRICE, QUERY)

# Order matters: the encoded event type is the position in this tuple + 1 (0 = padding).
EVENT_TYPES = ("view", "click", "cart", "fav", "purchase", "search")
EVENT_TYPE_INDEX = {name: i + 1 for i, name in enumerate(EVENT_TYPES)}
NUM_EVENT_TYPE_INDICES = len(EVENT_TYPES) + 1

# Time gap since the user's previous event, bucketed on a log scale (docs/contracts.md §2).
# Featurize, the Serve encoder and the simulator env all use gap_bucket_of, so a served
# history is bucketed exactly like the sequences the model was trained on.
FIRST_EVENT_BUCKET = 1
MAX_GAP_BUCKET = 31
NUM_GAP_BUCKETS = MAX_GAP_BUCKET + 1

PAD_INDEX = 0
OOV_INDEX = 1
PAD_TOKEN = "<pad>"
OOV_TOKEN = "<oov>"
FIRST_ID_INDEX = 2

# The per-position features a sequence model reads (docs/contracts.md §2-3): the sequence
# columns featurize writes, the batch keys training feeds and the tensors serving builds.
SEQUENCE_FEATURES = ("items", "event_types", "categories", "gap_buckets")
SECONDS_PER_DAY = 86_400.0

# Why a row was rejected (docs/contracts.md §1-2): readers set the first five, featurize's
# validation the rest. A reason is a short snake_case string kept with the rejected row.
WRONG_COLUMN_COUNT = "wrong_column_count"
BAD_ENCODING = "bad_encoding"
MISSING_USER_ID = "missing_user_id"
MISSING_ITEM_ID = "missing_item_id"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
BAD_TIMESTAMP = "bad_timestamp"
BAD_PRICE = "bad_price"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
NEGATIVE_PRICE = "negative_price"
ID_TOO_LONG = "id_too_long"

EVENT_SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.string(), nullable=False),
        pa.field(ITEM_ID, pa.string(), nullable=False),
        pa.field(EVENT_TYPE, pa.string(), nullable=False),
        pa.field(TIMESTAMP, pa.float64(), nullable=False),
        pa.field(SESSION_ID, pa.string()),
        pa.field(CATEGORY_ID, pa.string()),
        pa.field(PRICE, pa.float64()),
        pa.field(QUERY, pa.string()),
    ]
)

# What readers emit: the event schema (all fields nullable, since an invalid row may lack
# any of them) plus the reason a row is invalid (null when it is valid).
READER_SCHEMA = pa.schema(
    [pa.field(f.name, f.type, nullable=True) for f in EVENT_SCHEMA]
    + [pa.field(INVALID_REASON, pa.string())]
)


def empty_reader_table() -> pa.Table:
    return READER_SCHEMA.empty_table()


def gap_bucket_of(gap_seconds: np.ndarray) -> np.ndarray:
    """Gaps in seconds (not of first events) -> int64 buckets 2 + floor(log2(1 + gap)),
    capped at MAX_GAP_BUCKET; a negative gap (a clock running backwards) counts as 0."""
    gaps = np.maximum(np.asarray(gap_seconds, dtype=np.float64), 0.0)
    return np.minimum(2 + np.floor(np.log2(1.0 + gaps)), MAX_GAP_BUCKET).astype(np.int64)
