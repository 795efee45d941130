"""What every encoder shares: tied item scoring and the serving ``encode``."""

from __future__ import annotations

import torch
from torch import nn

from . import scoring
from .config import SEQUENCE_FEATURES, EncoderConfig
from .heads import PROFILE_FEATURES


class SequenceEncoder(nn.Module):
    """Subclasses set ``self.embed`` (an InputEmbedding) and implement ``forward``.

    ``forward(features) -> (B, T, D)``: hidden state at every position of LEFT-padded
    ``(B, T)`` int64 inputs; the state at t depends only on real inputs at positions <= t.
    """

    config: EncoderConfig

    def __init__(self) -> None:
        super().__init__()
        self.heads: nn.Module | None = None  # BehaviourHeads when config.behaviour_heads (build_encoder)
        self.outcomes: nn.Module | None = None  # OutcomeHeads when config.outcome_heads (build_encoder)

    def item_embeddings(self) -> torch.Tensor:
        """The scoring table, (V, D): ID rows, plus content vectors when the model has them."""
        return self.embed.item_table()

    def item_and_content_embeddings(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The scoring table and the same with every ID row replaced by the OOV row, both
        (V, D): items scored from their content alone (None for a model without item
        content). One pooling of the content for both."""
        return self.embed.tables()

    def trained_items(self) -> torch.Tensor | None:
        """(V,) bool of the items that have training events, for a model with item content
        (None without content). The others exist only in the catalogue: training leaves
        them out of the softmax, as a product not yet listed is no negative, or the model
        would learn to rank every new product last."""
        content = getattr(self.embed, "content", None)
        return None if content is None else content.has_id

    def with_query(self, users: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        """User vectors (N, D) made query-aware by their queries' token rows (N, L); rows
        with an empty query, and every row of a model without the query part, stay as
        they are (a recommendation is a search without a query)."""
        if tokens is None or self.embed.query is None:
            return users
        has_query = (tokens != 0).any(1, keepdim=True)  # (N, 1)
        return torch.where(has_query, self.embed.query.combine(users, tokens), users)

    def query_tokens(self, features: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The token rows of each row's query: ``query_tokens`` (B, L) as given (serving),
        else the ``target_query`` hashes (B,) looked up in the installed QueryTable."""
        if self.embed.query is None:
            return None
        if "query_tokens" in features:
            return features["query_tokens"]
        if "target_query" in features:
            return self.embed.query_table.lookup(features["target_query"])
        return None

    def last_state(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The state at each row's most recent (last) position, (B, D); a user without
        events is the zero state, for every encoder (what the query-aware model learns to
        search from when there is no history)."""
        keep = self.config.max_len
        trimmed = {k: features[k][:, -keep:] for k in SEQUENCE_FEATURES if k in features}
        return self(trimmed)[:, -1] * (trimmed["items"] != 0).any(1, keepdim=True)

    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """One user vector per row, query-aware where the row has a query: (B, D)."""
        return self.with_query(self.last_state(features), self.query_tokens(features))

    def encode_purchase(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The next-purchase vector per row (B, D): the purchase head on the last state."""
        if self.heads is None:
            raise ValueError("this model has no next-purchase head (train with --purchase-loss > 0)")
        return self.heads.purchase_vector(self.last_state(features))

    def outcome_logits(self, features: dict[str, torch.Tensor], state: torch.Tensor | None = None) -> torch.Tensor:
        """Purchase-propensity and churn logits per row (B, 2, heads.OUTCOMES order) from the
        inputs before a cut-off and the ``heads.PROFILE_FEATURES`` counts (each (B,)) at it;
        ``state``: their ``last_state`` when the caller already has it."""
        if self.outcomes is None:
            raise ValueError("this model has no propensity / churn heads (train with --outcome-loss > 0)")
        state = self.last_state(features) if state is None else state
        missing = [name for name in PROFILE_FEATURES if name not in features]
        if missing:
            raise ValueError(f"the propensity / churn heads need the profile counts {missing}")
        return self.outcomes.logits(state, torch.stack([features[name] for name in PROFILE_FEATURES], dim=-1))

    def predict_user(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """What the predictions endpoint and batch prediction answer, from one encoder pass:
        the vector to rank next purchases with (B, D) (the next-purchase head's when the
        model has one, else the next-item vector) and ``outcome_logits`` (B, 2)."""
        state = self.last_state(features)
        vector = self.heads.purchase_vector(state) if self.heads is not None else self.with_query(
            state, self.query_tokens(features))
        return vector, self.outcome_logits(features, state)

    def score(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores of every catalogue item for each row: (B, V)."""
        return scoring.catalogue_scores(self.encode(features), self.item_embeddings())

    def score_purchase(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-purchase scores of every catalogue item for each row: (B, V)."""
        return scoring.catalogue_scores(self.encode_purchase(features), self.item_embeddings())


def left_pad_shift(mask: torch.Tensor) -> torch.Tensor:
    """Per-row count of leading pad positions of a LEFT-padded (B, T) bool mask: (B,)."""
    return mask.shape[1] - mask.sum(dim=1)


def roll_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each row of x (B, T, ...) left by shift[b] positions along dim 1."""
    T = x.shape[1]
    idx = (torch.arange(T, device=x.device).unsqueeze(0) + shift.unsqueeze(1)) % T  # (B, T)
    if x.dim() == 3:
        idx = idx.unsqueeze(-1).expand(-1, -1, x.shape[2])
    return torch.gather(x, 1, idx)
