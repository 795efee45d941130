"""Variable-length rows -> one zero-padded int64 matrix: the one padding rule.

LEFT padding (the models' input layout, docs/contracts.md §3): a row's most recent event
is in the last column, and ``max_len`` keeps each row's LAST ``max_len`` values. RIGHT
padding: for sets such as a user's history items, where position carries no meaning.
Index 0 is padding everywhere, so a padded cell is never a real item.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SIDES = ("left", "right")


def pad_lists(column: pa.Array | pa.ChunkedArray, side: str = "left", max_len: int | None = None) -> np.ndarray:
    """A list<int> column (B rows) -> (B, W) int64; W = the longest kept row, at least 1."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
    return pad_flat(flat, lengths, side, max_len)


def pad_rows(rows: Sequence[Sequence[int] | np.ndarray], side: str = "left", max_len: int | None = None) -> np.ndarray:
    """Python/numpy rows of different lengths -> (B, W) int64, as ``pad_lists``."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.concatenate([np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]) if len(rows) else np.zeros(0, np.int64)
    return pad_flat(flat, lengths, side, max_len)


def pad_flat(flat: np.ndarray, lengths: np.ndarray, side: str = "left", max_len: int | None = None) -> np.ndarray:
    """Rows given as their concatenation ``flat`` and ``lengths`` (B,) -> (B, W) int64."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    keep = lengths if max_len is None else np.minimum(lengths, max_len)  # (B,)
    width = max(1, int(keep.max(initial=0)))
    out = np.zeros((len(lengths), width), dtype=np.int64)
    ends = np.cumsum(lengths)  # one past each row's last value in ``flat``
    row = np.repeat(np.arange(len(lengths)), keep)
    offset = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)  # 0..keep-1 per row
    src = np.repeat(ends - keep, keep) + offset  # the last ``keep`` values of each row
    col = offset if side == "right" else width - np.repeat(keep, keep) + offset
    out[row, col] = flat[src]
    return out
