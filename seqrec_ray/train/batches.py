"""Example tables / Ray Data numpy batches -> dicts of int64 torch tensors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from seqrec_ray.data.padding import pad_lists, pad_rows
from seqrec_ray.schema import SEQUENCE_FEATURES

# Variable-length list columns, padded on the right with 0 (pad is masked anyway).
RAGGED_COLUMNS = ("history", "negatives")
# Left-padded per-position columns (trimmed together).
POSITION_COLUMNS = (*SEQUENCE_FEATURES, "targets", "target_queries", "purchase_targets", "type_targets")


def collate(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A dict of numpy columns (as Ray Data's ``iter_torch_batches(collate_fn=...)``
    passes them) -> int64 tensors; string columns such as ``user_id`` are dropped."""
    out = {}
    for name, column in batch.items():
        array = _to_matrix(column, ragged=name in RAGGED_COLUMNS)
        if array is not None:
            out[name] = torch.from_numpy(array)
    return out


def table_to_tensors(table: pa.Table) -> dict[str, torch.Tensor]:
    """A whole example table -> int64 tensors (one row per example)."""
    out = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            out[name] = torch.from_numpy(pad_lists(column, "right"))
        elif pa.types.is_integer(column.type):
            out[name] = torch.from_numpy(column.to_numpy().astype(np.int64))
    return out


def iterate_batches(
    tensors: dict[str, torch.Tensor], batch_size: int, shuffle: bool = False, seed: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    """Row batches of a tensor dict; ``shuffle`` draws a fresh order from ``seed``."""
    n = len(next(iter(tensors.values())))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield {k: v[idx] for k, v in tensors.items()}


def concat_padded(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Row-concatenate batches; ragged columns are right-padded with 0 to the widest part.
    An empty list gives an empty dict."""
    if not parts:
        return {}
    out = {}
    for name in parts[0]:
        columns = [p[name] for p in parts]
        if columns[0].dim() == 2 and name in RAGGED_COLUMNS:
            width = max(c.shape[1] for c in columns)
            columns = [torch.nn.functional.pad(c, (0, width - c.shape[1])) for c in columns]
        out[name] = torch.cat(columns)
    return out


def trim_left_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the leading columns that are padding in every row of a LEFT-padded batch."""
    width = max(int((batch["items"] != 0).sum(1).max()), 1)
    return {k: (v[:, -width:] if k in POSITION_COLUMNS else v) for k, v in batch.items()}


def _to_matrix(column: Any, ragged: bool) -> np.ndarray | None:
    array = np.asarray(column) if not isinstance(column, np.ndarray) else column
    if array.dtype != object:
        return array.astype(np.int64) if np.issubdtype(array.dtype, np.integer) else None
    if len(array) == 0 or isinstance(array[0], (str, bytes)):
        return None
    lengths = [len(r) for r in array]
    if not ragged and min(lengths) != max(lengths):
        raise ValueError(f"list column rows differ in length ({min(lengths)}..{max(lengths)})")
    return pad_rows(array, "right")
