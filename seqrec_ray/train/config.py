"""The training configuration (one frozen dataclass for the train stage)."""

from __future__ import annotations

from dataclasses import dataclass, field

from seqrec_ray.models import ENCODER_NAMES, EncoderConfig
from seqrec_ray.models.config import CONTENT_FIELDS

# Per-model defaults for the knobs left as None, each selected on Beauty's VALIDATION
# split (valid NDCG@10) among the configurations tried (BENCHMARKS.md, offline quality).
# dim 128 over 64: transformer 0.0678 vs 0.0671; lstm 0.0597 vs 0.0588 (mask_history_in_loss).
MODEL_DEFAULTS: dict[str, dict] = {
    "lstm": dict(dim=128, hidden=256, num_layers=1, num_heads=1, dropout=0.5, emb_dropout=0.5, norm_first=False, lr=2e-3),
    "gru": dict(dim=64, hidden=256, num_layers=1, num_heads=1, dropout=0.5, emb_dropout=0.5, norm_first=False, lr=1e-3),
    "transformer": dict(
        dim=128, hidden=256, num_layers=2, num_heads=2, dropout=0.3, emb_dropout=0.3, norm_first=False, lr=1e-3
    ),
}
ENCODER_KNOBS = ("dim", "hidden", "num_layers", "num_heads", "dropout", "emb_dropout", "norm_first")
LOSSES = ("full", "sampled")
SAMPLERS = ("uniform", "popularity")
CONTENT_CHOICES = ("auto", "none", "all")
QUERY_CHOICES = ("auto", "none")


@dataclass(frozen=True)
class TrainConfig:
    model: str = field(default="lstm", metadata={"help": " | ".join(ENCODER_NAMES)})
    # Model knobs: None = the model's default from MODEL_DEFAULTS.
    dim: int | None = field(default=None, metadata={"help": "embedding size (default: the model's)"})
    hidden: int | None = field(default=None, metadata={"help": "RNN state / feed-forward size (default: the model's)"})
    num_layers: int | None = field(default=None, metadata={"help": "default: the model's"})
    num_heads: int | None = field(default=None, metadata={"help": "transformer heads (default: the model's)"})
    dropout: float | None = field(default=None, metadata={"help": "default: the model's"})
    emb_dropout: float | None = field(default=None, metadata={"help": "default: the model's"})
    norm_first: bool | None = field(default=None, metadata={"help": "pre-LN transformer (default: the model's)"})
    use_event_type: bool = field(default=True, metadata={"help": "the event-type input embedding"})
    use_gap: bool = field(default=True, metadata={"help": "the time-gap input embedding"})
    use_category: bool = field(default=True, metadata={"help": "the category input embedding"})
    # Item content (models/items.py): hashed catalogue tokens added to every item's vector.
    item_content: str = field(default="auto", metadata={"help": (
        "item content in the item vectors: auto (every field when the data has a catalogue, "
        "else none) | none | all | a comma-separated list of " + ",".join(CONTENT_FIELDS))})
    id_dropout: float = field(default=0.1, metadata={"help": (
        "with item content: share of known items read as unknown while training, so the content "
        "path learns to stand alone for new items")})
    content_loss: float = field(default=1.0, metadata={"help": (
        "with item content: weight of a second loss term that scores every item from its content "
        "alone, teaching the model to rank new products (0 = off; 1.0 selected on Beauty valid)")})
    content_buckets: int | None = field(default=None, metadata={"help": (
        "hashed content-token table rows (default: 8x the catalogue's distinct tokens as a power of "
        "two, 1,024..1,048,576: room for new words with few collisions)")})
    max_item_tokens: int = field(default=32, metadata={"help": "content tokens kept per item"})
    # The query-aware model (models/query.py): on by itself when the log has searches.
    query_model: str = field(default="auto", metadata={"help": (
        "the query-aware part (search text combined with the sequence): auto (on when the log "
        "has queries that led to engagements) | none")})
    query_loss: float = field(default=1.0, metadata={"help": (
        "with the query model: weight of the search objective (each target a query led to, "
        "scored again with that query) beside the next-item one")})
    query_buckets: int | None = field(default=None, metadata={"help": (
        "hashed query n-gram table rows (default: 4x the log's distinct n-grams as a power of "
        "two, 4,096..1,048,576)")})
    # Heads beside next-item on the same encoder (models/heads.py): 0 = off.
    purchase_loss: float = field(default=0.0, metadata={"help": (
        "weight of the next-purchase head's loss (the item of the user's next purchase, whatever "
        "events come between), trained jointly with next-item; 0 = no such head")})
    type_loss: float = field(default=0.0, metadata={"help": (
        "weight of the next-event-type head's loss (view/click/cart/fav/purchase/search); 0 = no such head")})
    # User-level heads at time cut-offs (models/heads.py OutcomeHeads, train/outcomes.py): 0 = off.
    outcome_loss: float = field(default=0.0, metadata={"help": (
        "weight of the purchase-propensity and churn heads' loss (user-level examples cut at earlier "
        "times, trained jointly with next-item; needs featurize --split temporal --cutoff T "
        "--valid-cutoff V); 0 = no such heads")})
    purchase_horizon_days: float | None = field(default=None, metadata={"help": (
        "propensity = buys within this many days of the cut-off (default: the validation period, T - V)")})
    churn_horizon_days: float | None = field(default=None, metadata={"help": (
        "churn = no event at all within this many days of the cut-off (default: the validation period, T - V)")})
    outcome_train_cutoffs: int = field(default=4, metadata={"help": (
        "training cut-offs for the user-level heads, one horizon apart before the validation cut-off")})
    init_from: str | None = field(default=None, metadata={"help": (
        "start from this checkpoint's weights (same model; its item vocabulary must be a prefix of "
        "the data's, as featurize --base-vocab makes it): daily incremental training")})
    # Loss.
    loss: str = field(default="full", metadata={"help": " | ".join(LOSSES)})
    num_negatives: int = field(default=1024, metadata={"help": "sampled loss: negatives per batch"})
    negative_sampler: str = field(default="uniform", metadata={"help": " | ".join(SAMPLERS)})
    # Off for shops whose users re-buy: it teaches the model never to recommend repeats.
    mask_history_in_loss: bool = field(default=False, metadata={"help": (
        "full softmax only: leave each position's earlier items out of its softmax, as evaluate "
        "--mask-history (the S3-Rec protocol) leaves them out of the ranking")})
    # Optimisation.
    epochs: int = field(default=150, metadata={"help": "upper bound: early stopping ends runs sooner (Beauty: 20-60 epochs)"})
    batch_size: int = 256
    lr: float | None = field(default=None, metadata={"help": "learning rate (default: the model's, resolved on construction)"})
    weight_decay: float = 0.0
    grad_clip: float | None = field(default=None, metadata={"help": "max gradient norm (default: None, no clipping)"})
    max_len: int = field(default=50, metadata={"help": "items of history the model sees"})
    seed: int = 0
    patience: int = field(default=8, metadata={"help": "epochs without a better valid NDCG@10 before stopping; 0 = never stop"})
    eval_batch_size: int = 1024
    ks: tuple[int, ...] = field(default=(5, 10, 20), metadata={"help": "metric cut-offs; must include 10"})
    run_name: str = "run"
    torch_threads: int | None = field(default=None, metadata={"help": "torch threads per process (default: torch's, on Ray workers their CPUs)"})

    def __post_init__(self) -> None:
        if self.model not in ENCODER_NAMES:
            raise ValueError(f"model must be one of {ENCODER_NAMES}, got {self.model!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.mask_history_in_loss and self.loss != "full":
            raise ValueError("mask_history_in_loss works with loss='full' only")
        if self.negative_sampler not in SAMPLERS:
            raise ValueError(f"negative_sampler must be one of {SAMPLERS}, got {self.negative_sampler!r}")
        for name in ("num_negatives", "epochs", "batch_size", "max_len", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience!r}")
        if not self.ks or any(k < 1 for k in self.ks) or 10 not in self.ks:
            raise ValueError(f"ks must be positive and include 10 (early stopping uses NDCG@10), got {self.ks!r}")
        self.content_fields(True)  # a bad --item-content fails here, naming the value
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(f"id_dropout must be in [0, 1), got {self.id_dropout!r}")
        if self.content_loss < 0:
            raise ValueError(f"content_loss must be >= 0, got {self.content_loss!r}")
        if self.content_buckets is not None and self.content_buckets < 2:
            raise ValueError(f"content_buckets must be >= 2 or None (auto), got {self.content_buckets!r}")
        if self.query_model not in QUERY_CHOICES:
            raise ValueError(f"query_model must be one of {QUERY_CHOICES}, got {self.query_model!r}")
        if self.query_loss < 0:
            raise ValueError(f"query_loss must be >= 0, got {self.query_loss!r}")
        if self.query_buckets is not None and self.query_buckets < 2:
            raise ValueError(f"query_buckets must be >= 2 or None (auto), got {self.query_buckets!r}")
        for name in ("purchase_horizon_days", "churn_horizon_days"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 or None (the validation period), got {getattr(self, name)!r}")
        if not isinstance(self.outcome_train_cutoffs, int) or self.outcome_train_cutoffs < 1:
            raise ValueError(f"outcome_train_cutoffs must be a positive int, got {self.outcome_train_cutoffs!r}")
        for name in ("purchase_loss", "type_loss", "outcome_loss"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1 or None, got {self.torch_threads!r}")
        object.__setattr__(self, "ks", tuple(self.ks))
        if self.lr is None:
            object.__setattr__(self, "lr", MODEL_DEFAULTS[self.model]["lr"])

    @property
    def behaviour_heads(self) -> bool:
        """Whether the model has the next-purchase / next-type heads (either loss on)."""
        return self.purchase_loss > 0 or self.type_loss > 0

    @property
    def outcome_heads(self) -> bool:
        """Whether the model has the user-level propensity / churn heads."""
        return self.outcome_loss > 0

    def outcome_cutoffs(self, manifest: dict):
        """Where this run cuts its user-level examples (train/outcomes.py); ValueError names
        what the artifacts lack. None without the heads."""
        if not self.outcome_heads:
            return None
        from .outcomes import outcome_cutoffs

        return outcome_cutoffs(manifest, self.purchase_horizon_days, self.churn_horizon_days, self.outcome_train_cutoffs)

    def model_knob(self, name: str):
        """A knob's value, or the model's default when it was left as None."""
        value = getattr(self, name)
        return MODEL_DEFAULTS[self.model][name] if value is None else value

    def content_fields(self, has_catalogue: bool) -> tuple[str, ...]:
        """The content fields this run uses, for data with or without a catalogue."""
        setting = self.item_content.strip()
        if setting == "auto":
            return CONTENT_FIELDS if has_catalogue else ()
        if setting == "none":
            return ()
        if setting == "all":
            return CONTENT_FIELDS
        fields = tuple(f.strip() for f in setting.split(",") if f.strip())
        unknown = sorted(set(fields) - set(CONTENT_FIELDS))
        if unknown or not fields:
            raise ValueError(f"item_content must be one of {CONTENT_CHOICES} or fields of "
                             f"{','.join(CONTENT_FIELDS)}; got {self.item_content!r}")
        return tuple(f for f in CONTENT_FIELDS if f in fields)

    def encoder_config(self, vocab_sizes: dict, content_fields: tuple[str, ...] = (),
                       content_buckets: int | None = None, query_buckets: int = 0) -> EncoderConfig:
        """The EncoderConfig for a vocabulary (``{"items": n, "categories": n}``), the
        content fields and token-table size resolved for the data, and the query n-gram
        table's size (0 = no query part)."""
        knobs = {k: self.model_knob(k) for k in ENCODER_KNOBS}
        return EncoderConfig(
            encoder=self.model,
            num_items=int(vocab_sizes["items"]),
            num_categories=int(vocab_sizes.get("categories", 2)),
            max_len=self.max_len,
            use_event_type=self.use_event_type,
            use_gap=self.use_gap,
            use_category=self.use_category,
            content_fields=tuple(content_fields),
            content_buckets=content_buckets or self.content_buckets or 1 << 16,
            max_item_tokens=self.max_item_tokens,
            id_dropout=self.id_dropout if content_fields else 0.0,
            query_buckets=query_buckets,
            behaviour_heads=self.behaviour_heads,
            outcome_heads=self.outcome_heads,
            **knobs,
        )
