"""The query-aware part of a model: search text as hashed n-grams, combined with the user.

A query is read as its words, its word pairs and the character trigrams of each word
(``"<gears>"`` -> ``<ge``, ``gea``, ...), each hashed into a fixed table: a misspelt word
("geers") still shares most of its trigrams with the right one, and a word never seen in
training still has a vector. The query vector (the mean of its n-gram embeddings) decides,
per dimension, how much of the user's sequence vector to keep (a gate) and what to add
(itself plus a learned correction), so the item scores ``(gate * user + q + shift) @ items``
rank by the query first and by the shopper's history where the query leaves room (a
brand-only query leaves much, a full title little).

Training sees queries as 63-bit hashes of their normalised text in the sequence rows
(``query_hash``: one per event a query led to, 0 = none); ``QueryTable`` maps those hashes
to token rows. Serving tokenises the typed text directly (``query_token_ids``). Pure torch
and the standard library.
"""

from __future__ import annotations

import hashlib
import re

import torch
from torch import nn

MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 16
_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # alphanumeric runs, as the search index tokenises


def query_words(text: str | None) -> list[str]:
    """The words of a query, lower-cased, in order, repeats kept (at most MAX_QUERY_WORDS)."""
    return _WORD.findall((text or "").lower()[:MAX_QUERY_CHARS])[:MAX_QUERY_WORDS]


def normalize_query(text: str | None) -> str | None:
    """A query as logs and models key it: its words, single-spaced; None if it has none."""
    return " ".join(query_words(text)) or None


def query_hash(text: str | None) -> int:
    """A stable id of a query's normalised text in 2..2**63-1 (0 = no query), never
    Python's salted ``hash``."""
    normal = normalize_query(text)
    if normal is None:
        return 0
    value = int.from_bytes(hashlib.blake2b(normal.encode("utf-8"), digest_size=8).digest(), "little") >> 1
    return max(value, 2)


def query_ngrams(text: str | None) -> list[str]:
    """Words, adjacent word pairs and each word's boundary-marked character trigrams."""
    words = query_words(text)
    grams = [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in zip(words, words[1:])]
    for w in words:
        marked = f"<{w}>"
        grams += [f"c:{marked[i:i + 3]}" for i in range(len(marked) - 2)]
    return grams


def query_token_ids(text: str | None, buckets: int, max_tokens: int) -> list[int]:
    """A query's hashed n-grams as token rows in 1..buckets-1, at most ``max_tokens``
    (words first, then pairs, then trigrams); [] for a query without words."""
    out = []
    for gram in query_ngrams(text)[:max_tokens]:
        digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
        out.append(1 + int.from_bytes(digest, "little") % (buckets - 1))
    return out


def token_matrix(texts: list[str | None], buckets: int, max_tokens: int) -> torch.Tensor:
    """Many queries -> (N, max_tokens) int64 token rows, 0-padded on the right."""
    out = torch.zeros(len(texts), max_tokens, dtype=torch.int64)
    for i, text in enumerate(texts):
        ids = query_token_ids(text, buckets, max_tokens)
        if ids:
            out[i, : len(ids)] = torch.tensor(ids)
    return out


class QueryEncoder(nn.Module):
    """Hashed n-gram embeddings of a query -> a gate and a shift on the user vector."""

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(buckets, dim, padding_idx=0)
        self.norm = nn.LayerNorm(dim)
        self.shift = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.gate = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L) token rows, 0-padded -> (N, D) query vectors (zero for an empty query)."""
        present = (tokens != 0).unsqueeze(-1)  # (N, L, 1)
        summed = (self.tokens(tokens) * present).sum(1)  # (N, D)
        return self.norm(summed / present.sum(1).clamp(min=1))

    def combine(self, users: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """User vectors (N, D) and their queries' tokens (N, L) -> query-aware vectors (N, D)."""
        q = self(tokens)
        return torch.sigmoid(self.gate(q)) * users + q + self.shift(q)  # the shift is residual


class QueryTable(nn.Module):
    """The training data's queries: sorted hashes (Q,) and their token rows (Q, L).

    Buffers that are not saved with the model (a shop's distinct queries can outnumber its
    items): training and offline evaluation install them from the artifacts (``set``)."""

    def __init__(self, max_tokens: int) -> None:
        super().__init__()
        self.register_buffer("hashes", torch.zeros(0, dtype=torch.int64), persistent=False)
        self.register_buffer("tokens", torch.zeros(0, max_tokens, dtype=torch.int64), persistent=False)

    def set(self, hashes: torch.Tensor, tokens: torch.Tensor) -> None:
        if tokens.shape != (len(hashes), self.tokens.shape[1]):
            raise ValueError(f"tokens must be ({len(hashes)}, {self.tokens.shape[1]}), got {tuple(tokens.shape)}")
        order = torch.argsort(hashes)
        self.hashes = hashes[order].to(self.hashes.device)
        self.tokens = tokens[order].to(self.tokens.device)

    def __len__(self) -> int:
        return len(self.hashes)

    def lookup(self, hashes: torch.Tensor) -> torch.Tensor:
        """Query hashes (N,) -> token rows (N, L); an unknown hash gets an empty row."""
        if not len(self.hashes):
            return torch.zeros(len(hashes), self.tokens.shape[1], dtype=torch.int64, device=hashes.device)
        at = torch.searchsorted(self.hashes, hashes).clamp(max=len(self.hashes) - 1)
        found = (self.hashes[at] == hashes).unsqueeze(1)
        return self.tokens[at] * found
