"""Per-position input embedding: item plus switchable event-type, gap and category parts."""

from __future__ import annotations

import torch
from torch import nn

from .config import NUM_EVENT_TYPES, NUM_GAP_BUCKETS, OOV_INDEX, EncoderConfig
from .items import ItemContent
from .query import QueryEncoder, QueryTable


class InputEmbedding(nn.Module):
    """Sums the enabled embeddings of each position; the item vectors double as output table."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.items = nn.Embedding(config.num_items, config.dim, padding_idx=0)
        self.content = ItemContent(config) if config.uses_content else None
        self.event_types = nn.Embedding(NUM_EVENT_TYPES, config.dim, padding_idx=0) if config.use_event_type else None
        self.gaps = nn.Embedding(NUM_GAP_BUCKETS, config.dim, padding_idx=0) if config.use_gap else None
        self.categories = (
            nn.Embedding(config.num_categories, config.dim, padding_idx=0) if config.use_category else None
        )
        self.dropout = nn.Dropout(config.emb_dropout)
        # The query-aware part: the search text's encoder and the training data's queries.
        self.query = QueryEncoder(config.query_buckets, config.dim) if config.uses_queries else None
        self.query_table = QueryTable(config.max_query_tokens) if config.uses_queries else None

    def item_vectors(self, idx: torch.Tensor) -> torch.Tensor:
        """Item indices of any shape -> (..., D): the ID row, plus content when enabled."""
        if self.content is None:
            return self.items(idx)
        return self.items(self.content.id_rows(idx)) + self.content(idx)

    def item_table(self) -> torch.Tensor:
        """Every item's vector, (V, D): the output scoring table."""
        return self.tables()[0]

    def tables(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The scoring table (V, D) and, with content, the content-only one: every item as if
        it had no ID row (the OOV row plus its content), what a new product scores with. The
        content vectors are pooled once for both."""
        if self.content is None:
            return self.items.weight, None
        rows = torch.arange(self.content.num_rows, device=self.items.weight.device)
        content = self.content(rows)  # (V, D)
        return self.items(self.content.id_rows(rows)) + content, self.items.weight[OOV_INDEX] + content

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.item_vectors(features["items"])  # (B, T, D)
        # Side features are optional per batch too: a caller without them gets the item part.
        for table, key in ((self.event_types, "event_types"), (self.gaps, "gap_buckets"), (self.categories, "categories")):
            if table is not None and key in features:
                x = x + table(features[key].clamp(0, table.num_embeddings - 1))
        return self.dropout(x)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Small normal init for embeddings and linear layers (BERT / SASRec practice)."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Embedding)):
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if isinstance(sub, nn.Linear) and sub.bias is not None:
                nn.init.zeros_(sub.bias)
            if isinstance(sub, nn.Embedding) and sub.padding_idx is not None:
                with torch.no_grad():
                    sub.weight[sub.padding_idx].zero_()
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
