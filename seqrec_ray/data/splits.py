"""Train / validation / test labels per event (docs/contracts.md §2, "Split protocols").

- ``leave_one_out``: a user's last event is the test target (2), the one before it the
  validation target (1), the rest train (0); users with fewer than 3 events are all train.
- ``temporal``: one global clock for everyone, so nothing at or after ``cutoff`` can reach
  training: ``ts >= cutoff`` -> 2, ``valid_cutoff <= ts < cutoff`` -> 1, earlier -> 0.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
PROTOCOLS = ("leave_one_out", "temporal")


@dataclass(frozen=True)
class SplitConfig:
    protocol: str = "leave_one_out"
    cutoff: float | None = None  # seconds; temporal only
    valid_cutoff: float | None = None  # seconds, < cutoff; temporal only (None: no valid)
    # The cold-item protocol: this share of items (picked by a seeded hash of the raw id)
    # loses every training event, so it is known only from the catalogue at train time.
    cold_items: float = field(default=0.0, metadata={"help": (
        "cold-item protocol: this share of items (a seeded hash of the id) loses every training "
        "event, keeping its valid/test ones, so only its catalogue content is known at train time")})
    cold_seed: int = field(default=0, metadata={"help": "which items the cold-item protocol picks"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.cold_items < 1.0:
            raise ValueError(f"cold_items must be a fraction in [0, 1), got {self.cold_items!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown split protocol {self.protocol!r}; known: {PROTOCOLS}")
        if self.protocol == "leave_one_out":
            if self.cutoff is not None or self.valid_cutoff is not None:
                raise ValueError("cutoff / valid_cutoff only apply to the temporal split, "
                                 f"got cutoff={self.cutoff!r} with leave_one_out")
            return
        if self.cutoff is None or not math.isfinite(self.cutoff):
            raise ValueError(f"the temporal split needs a finite cutoff, got {self.cutoff!r}")
        if self.valid_cutoff is not None and not (
                math.isfinite(self.valid_cutoff) and self.valid_cutoff < self.cutoff):
            raise ValueError(f"valid_cutoff ({self.valid_cutoff!r}) must be finite and below "
                             f"cutoff ({self.cutoff!r})")

    def held_out(self) -> tuple[int, float | None]:
        """What evaluation grades on, for stages that must not learn from it: (each user's
        last N events, events from this time on). Leave-one-out holds out the last two
        (valid, test); the temporal split everything from the first cutoff."""
        if self.protocol == "leave_one_out":
            return 2, None
        return 0, self.cutoff if self.valid_cutoff is None else self.valid_cutoff

    def describe(self) -> dict:
        """What the manifest records under ``split``."""
        cold = {"cold_items": self.cold_items, "cold_seed": self.cold_seed} if self.cold_items else {}
        if self.protocol == "leave_one_out":
            return {"protocol": self.protocol, **cold}
        return {"protocol": self.protocol, "cutoff": self.cutoff,
                "valid_cutoff": self.valid_cutoff, **cold}


def cold_item_mask(raw_ids, fraction: float, seed: int) -> np.ndarray:
    """Per raw item id (a pyarrow string array): is it one of the protocol's cold items?
    A seeded hash of the id, so every bucket, process and rerun picks the same items."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if fraction <= 0:
        return np.zeros(len(raw_ids), dtype=bool)
    encoded = pc.dictionary_encode(raw_ids.combine_chunks() if isinstance(raw_ids, pa.ChunkedArray) else raw_ids)
    values = encoded.dictionary.to_pylist()
    cold = np.array([_unit_hash(f"{seed}\0{v}") < fraction for v in values] + [False], dtype=bool)
    codes = pc.fill_null(encoded.indices, len(values)).to_numpy(zero_copy_only=False)
    return cold[codes]


def _unit_hash(text: str) -> float:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def parse_time(text: str) -> float:
    """Seconds since the epoch from a number or an ISO 8601 date/time (UTC if no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (give epoch seconds or ISO 8601, "
                         "e.g. 2017-12-02 or 2017-12-02T12:00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def assign_splits(ts: np.ndarray, from_end: np.ndarray, user_length: np.ndarray,
                  config: SplitConfig) -> np.ndarray:
    """int8 split per event.

    ``from_end``: 0 for a user's last event, 1 for the one before, ...;
    ``user_length``: the number of events of the event's user (both per event).
    """
    out = np.zeros(len(ts), dtype=np.int8)
    if config.protocol == "leave_one_out":
        enough = user_length >= 3
        out[enough & (from_end == 0)] = TEST
        out[enough & (from_end == 1)] = VALID
        return out
    out[ts >= config.cutoff] = TEST
    if config.valid_cutoff is not None:
        out[(ts >= config.valid_cutoff) & (ts < config.cutoff)] = VALID
    return out
