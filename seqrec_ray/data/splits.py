"""Train / validation / test labels per event (docs/contracts.md §2, "Split protocols").

- ``leave_one_out``: a user's last event is the test target (2), the one before it the
  validation target (1), the rest train (0); users with fewer than 3 events are all train.
- ``temporal``: one global clock for everyone, so nothing at or after ``cutoff`` can reach
  training: ``ts >= cutoff`` -> 2, ``valid_cutoff <= ts < cutoff`` -> 1, earlier -> 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
PROTOCOLS = ("leave_one_out", "temporal")


@dataclass(frozen=True)
class SplitConfig:
    protocol: str = "leave_one_out"
    cutoff: float | None = None  # seconds; temporal only
    valid_cutoff: float | None = None  # seconds, < cutoff; temporal only (None: no valid)

    def __post_init__(self) -> None:
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

    def describe(self) -> dict:
        """What the manifest records under ``split``."""
        if self.protocol == "leave_one_out":
            return {"protocol": self.protocol}
        return {"protocol": self.protocol, "cutoff": self.cutoff,
                "valid_cutoff": self.valid_cutoff}


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
        moment = moment.replace(tzinfo=timezone.utc)
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
