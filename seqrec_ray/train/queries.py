"""The query-aware model's inputs from an artifacts (or checkpoint) directory.

Featurize writes every query of the log by its hash (``search/queries.parquet``) and each
event's query hash in the sequences; this module turns those texts into the token rows
the model's QueryTable looks hashes up in (models/query.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from seqrec_ray.models.query import query_ngrams, token_matrix

from .config import TrainConfig

BUCKETS_PER_NGRAM = 4  # table rows per distinct n-gram of the log: room for new words
MIN_BUCKETS, MAX_BUCKETS = 1 << 12, 1 << 20


@dataclass(frozen=True)
class QueryInputs:
    buckets: int
    hashes: torch.Tensor  # (Q,) int64
    texts: tuple[str, ...]  # (Q,) normalised query texts


def has_queries(data_dir: str | Path) -> bool:
    """Does the log have queries that led to engagements (the query-aware model's data)?"""
    from seqrec_ray.data.search_index import load_query_texts

    return load_query_texts(str(data_dir)).num_rows > 0


def load_query_inputs(config: TrainConfig, data_dir: str | Path) -> QueryInputs | None:
    """The log's queries for a run, or None when the run has no query part (``--query-model
    none``, or a log without queries)."""

    if config.query_model == "none":
        return None
    texts, hashes = _read_queries(data_dir)
    if not texts:
        return None
    return QueryInputs(config.query_buckets or auto_buckets(texts), hashes, texts)


def _read_queries(directory: str | Path) -> tuple[tuple[str, ...], torch.Tensor]:
    """A directory's query texts and their hashes (empty when it has none)."""
    from seqrec_ray.data.search_index import load_query_texts

    table = load_query_texts(str(directory))
    return (tuple(table.column("query").to_pylist()),
            torch.tensor(table.column("query_hash").to_numpy(), dtype=torch.int64))


def auto_buckets(texts: tuple[str, ...]) -> int:
    """``BUCKETS_PER_NGRAM`` rows per distinct n-gram, as a power of two in
    [MIN_BUCKETS, MAX_BUCKETS]."""
    distinct = {g for t in texts for g in query_ngrams(t)}
    wanted = max(1, len(distinct)) * BUCKETS_PER_NGRAM
    return int(min(MAX_BUCKETS, max(MIN_BUCKETS, 1 << (wanted - 1).bit_length())))


def install_queries(encoder: torch.nn.Module, texts: tuple[str, ...], hashes: torch.Tensor) -> None:
    """Fill the encoder's QueryTable with these queries' token rows."""
    config = encoder.config
    tokens = token_matrix(list(texts), config.query_buckets, config.max_query_tokens)
    encoder.embed.query_table.set(hashes.to(torch.int64), tokens)


def install_directory_queries(encoder: torch.nn.Module, directory: str | Path) -> None:
    """Install the queries of an artifacts or checkpoint directory (its ``search/``) into a
    query-aware encoder; nothing for other encoders or a directory without queries."""
    if not encoder.config.uses_queries:
        return
    texts, hashes = _read_queries(directory)
    if texts:
        install_queries(encoder, texts, hashes)
