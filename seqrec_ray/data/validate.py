"""Validate and quarantine: reader tables -> (kept events, rejected rows with a reason).

A row is rejected with the first reason that applies: the reader's ``invalid_reason``,
then featurize's own checks (missing ids, an id longer than ``schema.MAX_ID_LENGTH``
characters, unknown event type, non-finite timestamp or one outside
``[min_timestamp, max_timestamp]``, negative price). The reader already flags
most of these; they are checked again so that featurize never trusts its input blindly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from seqrec_ray import schema as S
from seqrec_ray.schema import (
    BAD_TIMESTAMP,
    ID_TOO_LONG,
    MAX_ID_LENGTH,
    MISSING_ITEM_ID,
    MISSING_USER_ID,
    NEGATIVE_PRICE,
    TIMESTAMP_OUT_OF_RANGE,
    UNKNOWN_EVENT_TYPE,
)

REASON = "reason"

# Wall-clock sources: an e-commerce log from before 1990 or after 2100 is a broken clock.
WALL_CLOCK_MIN = 631_152_000.0  # 1990-01-01T00:00:00Z
WALL_CLOCK_MAX = 4_102_444_800.0  # 2100-01-01T00:00:00Z
# Formats without wall-clock time: S3-Rec's "timestamp" is the event's position in the
# user's line (0, 1, 2, ...); JDsearch's is seconds since the user's first event.
POSITIONAL_TIME_FORMATS = ("s3rec", "jdsearch")


@dataclass(frozen=True)
class ValidateConfig:
    min_timestamp: float = WALL_CLOCK_MIN
    max_timestamp: float = WALL_CLOCK_MAX

    def __post_init__(self) -> None:
        for name in ("min_timestamp", "max_timestamp"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.min_timestamp >= self.max_timestamp:
            raise ValueError(f"min_timestamp ({self.min_timestamp}) must be below "
                             f"max_timestamp ({self.max_timestamp})")

    @staticmethod
    def for_format(fmt: str) -> ValidateConfig:
        """Positional formats count from 0; the rest carry wall-clock seconds."""
        if fmt in POSITIONAL_TIME_FORMATS:
            return ValidateConfig(min_timestamp=0.0, max_timestamp=WALL_CLOCK_MAX)
        return ValidateConfig()


def _missing(col) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_length(col), 0), True)


def _too_long(table: pa.Table) -> pa.Array:
    """Any raw id (user, item, session, category) over MAX_ID_LENGTH characters."""
    masks = [pc.fill_null(pc.greater(pc.utf8_length(table[name]), MAX_ID_LENGTH), False)
             for name in (S.USER_ID, S.ITEM_ID, S.SESSION_ID, S.CATEGORY_ID)]
    return pc.or_(pc.or_(masks[0], masks[1]), pc.or_(masks[2], masks[3]))


def rejection_reasons(table: pa.Table, config: ValidateConfig) -> pa.ChunkedArray:
    """Per row: null when the row is good, else the first reason it fails."""
    ts = table[S.TIMESTAMP]
    checks = [
        (MISSING_USER_ID, _missing(table[S.USER_ID])),
        (MISSING_ITEM_ID, _missing(table[S.ITEM_ID])),
        (ID_TOO_LONG, _too_long(table)),
        (UNKNOWN_EVENT_TYPE,
         pc.invert(pc.fill_null(pc.is_in(table[S.EVENT_TYPE], pa.array(S.EVENT_TYPES)), False))),
        (BAD_TIMESTAMP, pc.invert(pc.fill_null(pc.is_finite(ts), False))),
        (TIMESTAMP_OUT_OF_RANGE, pc.fill_null(pc.or_(pc.less(ts, config.min_timestamp),
                                                     pc.greater(ts, config.max_timestamp)),
                                              False)),
        (NEGATIVE_PRICE, pc.fill_null(pc.less(table[S.PRICE], 0.0), False)),
    ]
    reason = table[S.INVALID_REASON]
    for name, mask in checks:  # the reader's reason, then ours, first one wins
        reason = pc.if_else(pc.and_(pc.is_null(reason), mask), pa.scalar(name), reason)
    return reason


def validate(table: pa.Table, config: ValidateConfig) -> tuple[pa.Table, pa.Table]:
    """READER_SCHEMA table -> (kept rows without ``invalid_reason``, rejects + ``reason``)."""
    reason = rejection_reasons(table, config)
    bad = pc.is_valid(reason)
    kept = table.filter(pc.invert(bad)).drop_columns([S.INVALID_REASON])
    rejects = table.filter(bad).append_column(REASON, reason.filter(bad))
    return kept, rejects


def count_reasons(rejects: pa.Table) -> dict[str, int]:
    """{reason: rows} for a rejects table."""
    if rejects.num_rows == 0:
        return {}
    counts = pc.value_counts(rejects[REASON])
    return {v["values"]: v["counts"] for v in counts.to_pylist()}
