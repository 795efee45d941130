"""Item vectors: an ID embedding (when the item has one) plus a content embedding.

The content part of an item is the mean of the embeddings of its hashed content tokens
(category, brand, price bucket, attributes, title words: ``seqrec_ray.data.catalogue``).
Tokens live in a fixed table, so an item never seen in training, or listed after it, still
gets a vector from what the catalogue says about it. The same vectors are the encoder's
inputs and the output scoring table.

``has_id`` marks the items whose ID row was trained (train-split count > 0); the others
use the out-of-vocabulary row instead, as do a random ``id_dropout`` share of known items
while training, so that the content path learns to stand alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import OOV_INDEX, PAD_INDEX, EncoderConfig


class ItemContent(nn.Module):
    """Hashed-token content embeddings and each item's tokens (buffers, saved with the model)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.id_dropout = config.id_dropout
        self.tokens = nn.Embedding(config.content_buckets, config.dim, padding_idx=0)
        self.register_buffer("item_tokens", torch.zeros(config.num_items, config.max_item_tokens, dtype=torch.int32))
        self.register_buffer("has_id", torch.ones(config.num_items, dtype=torch.bool))
        self._rows = config.num_items  # rows in use; buffers may hold spare capacity (extend)

    @property
    def num_rows(self) -> int:
        return self._rows

    def set_items(self, item_tokens: torch.Tensor, has_id: torch.Tensor) -> None:
        """Install a vocabulary's content: (V, L) token ids (0 = none) and (V,) bool."""
        if item_tokens.shape != self.item_tokens.shape:
            raise ValueError(f"item_tokens must be {tuple(self.item_tokens.shape)}, got {tuple(item_tokens.shape)}")
        if has_id.shape != self.has_id.shape:
            raise ValueError(f"has_id must be {tuple(self.has_id.shape)}, got {tuple(has_id.shape)}")
        if int(item_tokens.max()) >= self.tokens.num_embeddings or int(item_tokens.min()) < 0:
            raise ValueError(f"token ids must be in [0, {self.tokens.num_embeddings})")
        with torch.no_grad():
            self.item_tokens.copy_(item_tokens.to(torch.int32))
            self.has_id.copy_(has_id.to(torch.bool))
            self.has_id[PAD_INDEX] = True  # pad stays the zero row, oov stays oov
            self.has_id[OOV_INDEX] = True

    def extend(self, item_tokens: torch.Tensor) -> int:
        """Append items known only by content (no ID row): (N, L) tokens. Returns the
        index of the first new row. Capacity doubles, so many small appends stay cheap."""
        n, width = item_tokens.shape
        if width != self.item_tokens.shape[1]:
            raise ValueError(f"item_tokens must have {self.item_tokens.shape[1]} columns, got {width}")
        start = self._rows
        storage_tokens, storage_ids = self._storage()
        if start + n > storage_tokens.shape[0]:
            capacity = max(start + n, 2 * storage_tokens.shape[0])
            storage_tokens = _grow(storage_tokens, capacity)
            storage_ids = _grow(storage_ids, capacity)
        with torch.no_grad():
            storage_tokens[start:start + n] = item_tokens.to(storage_tokens)
            storage_ids[start:start + n] = False
        self._spare = (storage_tokens, storage_ids)
        self._rows = start + n
        self.item_tokens = storage_tokens[: self._rows]
        self.has_id = storage_ids[: self._rows]
        return start

    def replace(self, index: torch.Tensor, item_tokens: torch.Tensor) -> None:
        """New content for existing rows (an updated catalogue entry): (N,) and (N, L)."""
        with torch.no_grad():
            self.item_tokens[index.to(self.item_tokens.device)] = item_tokens.to(self.item_tokens)

    def _storage(self) -> tuple[torch.Tensor, torch.Tensor]:
        spare = getattr(self, "_spare", None)
        if spare is None or spare[0].data_ptr() != self.item_tokens.data_ptr():
            spare = (self.item_tokens, self.has_id)
        return spare

    def content_vectors(self, item_tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids -> (N, D): the mean of the present tokens (zeros for none).

        Tokens are packed to the left, so columns past the longest row are all padding and
        are dropped first: the same result, without reading them (most catalogues give
        far fewer tokens than ``max_item_tokens``)."""
        width = max(int((item_tokens != 0).sum(1).max()), 1) if item_tokens.numel() else 1
        return F.embedding_bag(item_tokens[:, :width], self.tokens.weight, mode="mean", padding_idx=0)

    def id_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Which ID row each item index reads: its own, or OOV when it has none (or, while
        training, when dropped). Pad stays pad."""
        keep = self.has_id[idx]
        if self.training and self.id_dropout > 0:
            dropped = torch.rand(idx.shape, device=idx.device) < self.id_dropout
            keep = keep & ~(dropped & (idx > OOV_INDEX))
        return torch.where(keep | (idx == PAD_INDEX), idx, torch.full_like(idx, OOV_INDEX))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Content vectors of item indices of any shape: (..., D)."""
        flat = idx.reshape(-1)
        vectors = self.content_vectors(self.item_tokens[flat])  # (N, D)
        return vectors.view(*idx.shape, vectors.shape[-1])


def _grow(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    out = torch.zeros((rows, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    out[: tensor.shape[0]] = tensor
    return out
