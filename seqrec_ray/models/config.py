"""The encoder configuration: everything needed to rebuild an encoder from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

ENCODER_NAMES = ("lstm", "gru", "transformer")

# Copies of seqrec_ray.schema's contract constants (docs/contracts.md §2), kept here so that
# the models import only torch and the standard library; tests/test_models.py checks that
# they agree with schema. Event types 1..6 plus pad; gap buckets 1..31 plus pad.
NUM_EVENT_TYPES = 7
NUM_GAP_BUCKETS = 32
PAD_INDEX = 0
OOV_INDEX = 1
FIRST_ITEM_INDEX = 2  # item indices 0 (pad) and 1 (oov) are never ranked or predicted
# The per-position input features of every encoder, in this order (schema.SEQUENCE_FEATURES).
SEQUENCE_FEATURES = ("items", "event_types", "categories", "gap_buckets")
# Item content fields (seqrec_ray.data.catalogue.CONTENT_FIELDS).
CONTENT_FIELDS = ("category", "brand", "price", "attributes", "title")


@dataclass(frozen=True)
class EncoderConfig:
    """Shape and regularisation of one sequence encoder.

    ``num_items`` and ``num_categories`` count the pad (0) and oov (1) rows, as the
    artifacts' ``vocab_sizes`` do. ``dim`` is the item-embedding width and the width of
    the user vector (scores are tied to the item-embedding table).
    """

    encoder: str
    num_items: int
    num_categories: int = 2
    max_len: int = 50
    dim: int = 64
    hidden: int = 128  # RNN state width (projected to ``dim``); transformer FFN width
    num_layers: int = 1
    num_heads: int = 2
    dropout: float = 0.3  # inside the encoder (between RNN layers / in transformer blocks)
    emb_dropout: float = 0.3  # on the summed input embeddings
    norm_first: bool = False  # transformer only: pre-LN (True) or post-LN (False) blocks
    use_event_type: bool = True
    use_gap: bool = True
    use_category: bool = True
    # Item content (models/items.py): the catalogue fields whose hashed tokens add to each
    # item's vector; () = ID embeddings only.
    content_fields: tuple[str, ...] = ()
    content_buckets: int = 1 << 16  # hashed-token table rows
    max_item_tokens: int = 32  # content tokens kept per item
    id_dropout: float = 0.0  # share of known items read as OOV while training (content only)
    # The query-aware part (models/query.py): hashed query n-gram table rows; 0 = none.
    query_buckets: int = 0
    max_query_tokens: int = 48  # n-grams kept per query
    # The next-purchase and next-event-type heads (models/heads.py) on the shared state.
    behaviour_heads: bool = False
    # The user-level purchase-propensity and churn heads (models/heads.py, OutcomeHeads).
    outcome_heads: bool = False

    @property
    def uses_queries(self) -> bool:
        return self.query_buckets > 0

    @property
    def uses_content(self) -> bool:
        return bool(self.content_fields)

    def __post_init__(self) -> None:
        object.__setattr__(self, "content_fields", tuple(self.content_fields))
        unknown = sorted(set(self.content_fields) - set(CONTENT_FIELDS))
        if unknown:
            raise ValueError(f"content_fields: unknown {unknown}; known: {', '.join(CONTENT_FIELDS)}")
        for name in ("content_buckets", "max_item_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an int >= 2, got {value!r}")
        if not isinstance(self.query_buckets, int) or self.query_buckets < 0 or self.query_buckets == 1:
            raise ValueError(f"query_buckets must be 0 (no query model) or an int >= 2, got {self.query_buckets!r}")
        if not isinstance(self.max_query_tokens, int) or self.max_query_tokens < 1:
            raise ValueError(f"max_query_tokens must be a positive int, got {self.max_query_tokens!r}")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout!r}")
        if self.id_dropout and not self.content_fields:
            raise ValueError("id_dropout needs content_fields: without content a dropped item has no vector")
        if self.encoder not in ENCODER_NAMES:
            raise ValueError(f"encoder must be one of {ENCODER_NAMES}, got {self.encoder!r}")
        if self.num_items < 3:
            raise ValueError(f"num_items must count pad, oov and >= 1 item (>= 3), got {self.num_items}")
        if self.num_categories < 2:
            raise ValueError(f"num_categories must count pad and oov (>= 2), got {self.num_categories}")
        for name in ("max_len", "dim", "hidden", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("dropout", "emb_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.encoder == "transformer" and self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
