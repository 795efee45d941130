"""The serving configuration: one frozen dataclass shared by every deployment."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from seqrec_ray.models.scoring import NEW_ITEM_BOOST

DEVICES = ("auto", "cpu", "cuda")
SCORE_DTYPES = ("float32", "bfloat16")
API_KEY_ENV = "SEQREC_API_KEY"
MIN_API_KEY_LENGTH = 8
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ServeConfig:
    """Where the model and store live, and the limits every request is held to.

    ``checkpoint`` is a checkpoint directory (docs/contracts.md §3); ``store`` a store URL
    for ``seqrec_ray.store.open_store`` (``sqlite:///path.db``, a plain path, or
    ``redis://host:port/db``).

    The API key itself is never in the config: every deployment receives the config as an
    init argument, which Serve keeps and shows. The ingress replica reads the key where it
    runs (``privacy.read_api_key``) from ``api_key_file`` when given, else from the environment
    variable named by ``api_key_env`` when that is set; neither: the endpoint is open.
    ``log_user_ids`` (debugging only) puts raw user ids in our log lines and turns Serve's
    per-request access log of the ingress back on; by default ids are logged hashed.
    """

    checkpoint: str
    store: str
    api_key_file: str | None = None
    api_key_env: str | None = API_KEY_ENV
    log_user_ids: bool = False
    device: str = "auto"  # encoder and ranker: "auto" = cuda when available
    history_limit: int = 200  # events fetched per user; the encoder keeps its max_len of them
    max_k: int = 100
    max_items: int = 1000  # candidates per /rank request
    max_events: int = 1000  # events per /events request
    max_categories: int = 100
    max_posted_items: int = 1000  # catalogue rows per POST /items
    max_body_bytes: int = 1 << 20
    reasons_per_item: int = 2
    ingress_batch_size: int = 32  # /recommend requests that travel the chain together
    ingress_batches_in_flight: int = 2  # per ingress replica: one batch is fetched while another ranks
    encoder_batch_size: int = 32
    batch_wait_s: float = 0.0  # 0: no waiting at low load; under load batches form from the queue
    torch_threads: int | None = None  # None: leave torch's default (Ray sets it from num_cpus)
    search_candidates: int = 200  # /search: matches the retriever hands the ranker
    # /search and /rank with a query: how much query relevance outweighs the user's history
    # (ranking.search_scores); a first heuristic until a query-aware model scores both.
    search_relevance_weight: float = 3.0
    # Models with item content: added to the score of items without training events (new
    # products) wherever the ranker scores (models.scoring.NEW_ITEM_BOOST).
    new_item_boost: float = NEW_ITEM_BOOST
    score_dtype: str = "float32"  # "bfloat16": half-size full-catalogue pass, exact rescoring

    def __post_init__(self) -> None:
        for name in ("checkpoint", "store"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if self.api_key_file is not None and (not isinstance(self.api_key_file, str) or not self.api_key_file.strip()):
            raise ValueError(f"api_key_file must be a path to a file holding the key, or None; got {self.api_key_file!r}")
        if self.api_key_env is not None and (not isinstance(self.api_key_env, str) or not ENV_NAME.fullmatch(self.api_key_env)):
            raise ValueError(f"api_key_env must be an environment variable name, or None; got {self.api_key_env!r}")
        if not isinstance(self.log_user_ids, bool):
            raise ValueError(f"log_user_ids must be true or false, got {self.log_user_ids!r}")
        if self.score_dtype not in SCORE_DTYPES:
            raise ValueError(f"score_dtype must be one of {SCORE_DTYPES}, got {self.score_dtype!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in (
            "history_limit", "max_k", "max_items", "max_events", "max_categories", "max_posted_items",
            "max_body_bytes", "reasons_per_item", "ingress_batch_size",
            "ingress_batches_in_flight", "encoder_batch_size", "search_candidates",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(self.batch_wait_s, (int, float)) and math.isfinite(self.batch_wait_s) and 0 <= self.batch_wait_s <= 1):
            raise ValueError(f"batch_wait_s must be in [0, 1] seconds, got {self.batch_wait_s!r}")
        for name in ("search_relevance_weight", "new_item_boost"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.torch_threads is not None and (not isinstance(self.torch_threads, int) or self.torch_threads < 1):
            raise ValueError(f"torch_threads must be a positive int or None, got {self.torch_threads!r}")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible to this process, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no GPU is visible to this replica")
    return device
