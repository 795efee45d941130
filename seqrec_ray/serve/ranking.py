"""Pure scoring for the Ranker: masked top-k, candidate re-ranking, popularity, reasons.

No Ray here; the Ranker deployment only batches requests into these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqrec_ray.data.padding import pad_rows
from seqrec_ray.data.vocab import Vocab
from seqrec_ray.models import scoring
from seqrec_ray.models.query import token_matrix
from seqrec_ray.schema import FIRST_ID_INDEX

from .config import SCORE_DTYPES
from .live_items import CatalogueChanges, LiveCatalogue
from .model import ServingModel, model_label

# How a reason names an event; stronger signals first when one item has several events.
VERBS = {"purchase": "bought", "cart": "carted", "fav": "favourited", "click": "clicked", "view": "viewed", "search": "searched for"}
STRENGTH = {name: i for i, name in enumerate(VERBS)}
SHORTLIST_MARGIN = 64  # extra bfloat16 candidates rescored exactly per request


@dataclass(frozen=True)
class Filter:
    """What one request may not see: item indices to drop and allowed category indices."""

    exclude: np.ndarray  # (E,) int64 item indices
    categories: np.ndarray | None = None  # (C,) int64; None = every category


def mask_invalid(scores: torch.Tensor, filters: Sequence[Filter], item_category: torch.Tensor,
                 blocked: torch.Tensor | None = None) -> torch.Tensor:
    """Set pad, oov, discontinued (``blocked``, (V,) bool), excluded and off-category items
    to -inf, in place. scores: (B, V)."""
    scoring.mask_unrankable(scores)
    if blocked is not None:
        scores.masked_fill_(blocked.to(scores.device).unsqueeze(0), float("-inf"))
    if any(len(f.exclude) for f in filters):
        exclude = torch.from_numpy(pad_rows([f.exclude for f in filters], "right"))  # (B, E), 0-padded
        scoring.mask_items(scores, exclude)
    for b, f in enumerate(filters):
        if f.categories is not None:
            allowed = torch.isin(item_category, torch.from_numpy(f.categories).to(item_category.device))  # (V,)
            scoring.mask_outside(scores[b], allowed)
    return scores


def top_k(
    scores: torch.Tensor, ks: Sequence[int], filters: Sequence[Filter], item_category: torch.Tensor,
    blocked: torch.Tensor | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row the best ``ks[b]`` allowed items: (indices, scores), best first.

    Fewer than k come back when fewer items pass the filters; masked items never do.
    """
    scores = mask_invalid(scores, filters, item_category, blocked)  # (B, V)
    values, indices = scoring.top_k(scores, max(ks))  # (B, max k)
    out = []
    for row_values, row_indices, k in zip(values, indices, ks):
        kept_values, kept_indices = scoring.finite(row_values[:k], row_indices[:k])
        out.append((kept_indices.cpu().numpy().astype(np.int64), kept_values.float().cpu().numpy().astype(np.float64)))
    return out


def popular(counts: torch.Tensor, k: int, f: Filter, item_category: torch.Tensor,
            blocked: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cold start: the most frequent allowed items, scored by their training-log count."""
    return top_k(counts.to(torch.float32).unsqueeze(0).clone(), [k], [f], item_category, blocked)[0]


def rank_candidates(
    user: torch.Tensor | None, embeddings: torch.Tensor, candidates: np.ndarray, counts: torch.Tensor,
    boost: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank the given candidate indices (N,): (order into candidates, score per candidate).

    Known items are scored by ``user @ item`` (plus ``boost``, (V,), for new items; by
    popularity when ``user`` is None, a cold start); unknown ones (index < 2) get score NaN
    and go last in their given order.
    """
    idx = torch.from_numpy(candidates).to(embeddings.device)
    scores = scoring.candidate_scores(user, embeddings, idx, counts).cpu().numpy()  # (N,)
    if user is not None and boost is not None:
        scores = scores + boost[idx].double().cpu().numpy()
    known = candidates >= FIRST_ID_INDEX
    # Stable sort: known by score descending, then unknown in their given order.
    order = np.lexsort((np.arange(len(candidates)), -np.nan_to_num(scores, nan=-np.inf), ~known))
    return order, scores


def explain(
    recommended: np.ndarray,
    history_items: np.ndarray,
    history_types: Sequence[str],
    embeddings: torch.Tensor,
    per_item: int,
) -> list[list[tuple[int, str, float]]]:
    """For each recommended item (K,), the history items most similar to it.

    Returns per item up to ``per_item`` (history item index, event type, cosine) with a
    positive cosine, strongest first, never the item itself. One entry per history item, under its strongest
    event type (a purchase says more than a view of the same item).
    """
    strongest: dict[int, str] = {}
    for item, event_type in zip(history_items.tolist(), history_types):
        if item < FIRST_ID_INDEX:
            continue  # unknown items have no meaningful embedding to compare
        if item not in strongest or STRENGTH.get(event_type, 99) < STRENGTH.get(strongest[item], 99):
            strongest[item] = event_type
    if not strongest or len(recommended) == 0:
        return [[] for _ in recommended]
    hist = torch.tensor(list(strongest), dtype=torch.int64, device=embeddings.device)
    rec = torch.nn.functional.normalize(embeddings[torch.from_numpy(recommended).to(embeddings.device)], dim=1)  # (K, D)
    past = torch.nn.functional.normalize(embeddings[hist], dim=1)  # (H, D)
    sims = (rec @ past.T).cpu().numpy()  # (K, H)
    hist_list = hist.cpu().tolist()
    out = []
    for rec_item, row in zip(recommended.tolist(), sims):
        # An item never explains itself: "viewed X" as the reason for X says nothing.
        best = [j for j in np.argsort(-row, kind="stable") if row[j] > 0 and hist_list[j] != rec_item]
        out.append([(hist_list[j], strongest[hist_list[j]], float(row[j])) for j in best[:per_item]])
    return out


def reason_text(contributions: Sequence[tuple[str, str, float]]) -> str:
    """[(raw item id, event type, weight)] -> e.g. "viewed X, carted Y"."""
    if not contributions:
        return "recommended from your overall activity"
    return ", ".join(f"{VERBS.get(t, t)} {raw}" for raw, t, _ in contributions)


@dataclass
class RankerModel:
    """What ranking needs from a checkpoint, on the ranker's device, kept in step with the
    live catalogue (``apply``: rows for items posted since the checkpoint).

    ``fast_table`` (optional, bfloat16): a half-size copy of the item table for the
    full-catalogue pass, which reads every row per request and is bound by memory
    bandwidth on CPU. Its shortlist is rescored exactly with the float32 table.
    """

    key: str
    label: str
    embeddings: torch.Tensor  # (V, D) float32
    item_category: torch.Tensor  # (V,) int64
    counts: torch.Tensor  # (V,) int64
    catalogue: LiveCatalogue
    fast_table: torch.Tensor | None = None  # (V, D) bfloat16
    serving: ServingModel | None = None  # the encoder whose content vectors new items get
    new_item_boost: float = 0.0  # added to items without training events (content models only)
    boost: torch.Tensor | None = None  # (V,) scoring.new_item_boost of ``counts``, or None

    @classmethod
    def from_serving(cls, model: ServingModel, score_dtype: str = "float32",
                     new_item_boost: float = scoring.NEW_ITEM_BOOST) -> RankerModel:
        with torch.no_grad():
            embeddings = model.encoder.item_embeddings().detach().float().contiguous()
        device = embeddings.device
        counts = torch.tensor(model.vocab.item_counts, dtype=torch.int64, device=device)
        # An ID-only model's rows for never-trained items are noise: nothing to lift.
        boost = new_item_boost if model.encoder.config.uses_content else 0.0
        return cls(
            key=model.key,
            label=model_label(model.info),
            embeddings=embeddings,
            item_category=torch.tensor(model.vocab.item_category, dtype=torch.int64, device=device),
            counts=counts,
            catalogue=model.catalogue,
            fast_table=fast_table(embeddings, score_dtype),
            serving=model,
            new_item_boost=boost,
            boost=scoring.new_item_boost(counts, boost),
        )

    @property
    def vocab(self) -> Vocab:
        return self.catalogue.vocab

    def blocked(self) -> torch.Tensor | None:
        return self.catalogue.blocked(self.embeddings.device)

    def apply(self, changes: CatalogueChanges | None) -> None:
        """Score rows for items added or updated live: their content vectors (no ID row)."""
        if changes is None or self.serving is None:
            return
        self.serving.apply(changes)
        if changes.vectors_changed:
            with torch.no_grad():
                rows = torch.tensor(changes.added + changes.replaced, dtype=torch.int64, device=self.embeddings.device)
                vectors = self.serving.encoder.embed.item_vectors(rows).float()  # (N, D)
            n_added = len(changes.added)
            table = torch.cat([self.embeddings, vectors[:n_added]]) if n_added else self.embeddings
            if changes.replaced:
                table[rows[n_added:]] = vectors[n_added:]
            self.embeddings = table.contiguous()
            if self.fast_table is not None:
                self.fast_table = self.embeddings.to(torch.bfloat16).contiguous()
            if n_added:
                self.counts = torch.cat([self.counts, torch.zeros(n_added, dtype=self.counts.dtype,
                                                                  device=self.counts.device)])
                self.boost = scoring.new_item_boost(self.counts, self.new_item_boost)
        self.item_category = torch.from_numpy(self.catalogue.item_category).to(self.embeddings.device)


def fast_table(embeddings: torch.Tensor, score_dtype: str) -> torch.Tensor | None:
    if score_dtype not in SCORE_DTYPES:
        raise ValueError(f"score_dtype must be one of {SCORE_DTYPES}, got {score_dtype!r}")
    return embeddings.to(torch.bfloat16).contiguous() if score_dtype == "bfloat16" else None


def catalogue_top_k(
    model: RankerModel, users: torch.Tensor, ks: Sequence[int], filters: Sequence[Filter]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-k over the whole catalogue for each user row (B, D), with exact float32 scores.

    With a bfloat16 fast table the pass keeps k + SHORTLIST_MARGIN per row, then ranks
    that shortlist by exact scores: results differ from pure float32 only if rounding
    pushed a true top-k item below the shortlist's end.
    """
    if model.fast_table is None:
        scores = scoring.boost_items(scoring.catalogue_scores(users, model.embeddings), model.boost)  # (B, V)
        return top_k(scores, ks, filters, model.item_category, model.blocked())
    scores = scoring.catalogue_scores(users.to(torch.bfloat16), model.fast_table)  # (B, V) bfloat16, ranked as is
    scores = scoring.boost_items(scores, model.boost)
    shortlists = top_k(scores, [k + SHORTLIST_MARGIN for k in ks], filters, model.item_category, model.blocked())
    out = []
    for user, k, (idx, _) in zip(users, ks, shortlists):
        rows = torch.from_numpy(idx).to(user.device)
        exact = model.embeddings[rows] @ user
        if model.boost is not None:
            exact = exact + model.boost[rows]
        exact = exact.double().cpu().numpy()  # (S,)
        order = np.argsort(-exact, kind="stable")[:k]
        out.append((idx[order], exact[order]))
    return out


@dataclass(frozen=True)
class RecommendQuery:
    k: int
    vector: np.ndarray | None  # (D,) user vector; None = cold start (popular items)
    exclude: tuple[str, ...] = ()  # raw item ids never to return (e.g. purchased)
    categories: tuple[str, ...] | None = None  # raw category ids to draw from
    history: tuple[tuple[str, str], ...] = ()  # (raw item id, event type), for reasons


def recommend_query(
    k: int,
    history: Sequence[Mapping[str, Any]],
    exclude_purchased: bool,
    categories: Sequence[str] | None = None,
    vector: np.ndarray | None = None,
    used: int = 0,
) -> RecommendQuery:
    """What /recommend asks the ranker for one user, from their stored history (oldest first,
    ``StoredEvent.as_dict()`` shape) and, for a warm user, the encoder's vector and how many
    latest events it saw (``used``, the events reasons may cite). The ingress and the
    simulator's checkpoint arm both build their queries here, so they cannot differ."""
    exclude = tuple(e["item_id"] for e in history if e["event_type"] == "purchase") if exclude_purchased else ()
    seen = history[len(history) - used:] if vector is not None and used > 0 else ()
    return RecommendQuery(k=k, vector=vector, exclude=exclude, categories=None if categories is None else tuple(categories),
                          history=tuple((e["item_id"], e["event_type"]) for e in seen))


def recommend_batch(model: RankerModel, queries: Sequence[RecommendQuery], per_item: int) -> list[list[dict]]:
    """Top-k raw items with scores and reasons for each query; one matmul for the warm ones."""
    filters = [_filter(model, q) for q in queries]
    results: list[list[tuple[np.ndarray, np.ndarray]] | None] = [None] * len(queries)
    warm = [i for i, q in enumerate(queries) if q.vector is not None]
    if warm:
        users = torch.from_numpy(np.stack([queries[i].vector for i in warm])).to(model.embeddings)  # (B, D)
        picks = catalogue_top_k(model, users, [queries[i].k for i in warm], [filters[i] for i in warm])
        for i, pick in zip(warm, picks):
            results[i] = pick
    out = []
    for q, f, res in zip(queries, filters, results):
        indices, scores = res if res is not None else popular(model.counts, q.k, f, model.item_category,
                                                              model.blocked())
        out.append(_with_reasons(model, q, indices, scores, per_item))
    return out


def rank_items(model: RankerModel, vector: np.ndarray | None, items: Sequence[str],
               matches: Sequence[Mapping[str, Any]] | None = None, relevance_weight: float = 0.0,
               text: str = "") -> list[dict]:
    """Exactly ``items``, best first; unknown items last in their given order (score None).
    An item posted live is scored from its content (``new_item``); a discontinued one is
    still scored (the caller asked for it) and flagged.

    ``matches`` (the retriever's, for the request's query): the items that match the query
    come first, by ``search_scores``; the others follow by the model's score alone, which
    for a query-aware model is its score with the query ``text``."""
    catalogue = model.catalogue
    candidates = catalogue.item_indices(items)
    user = _user_vector(model, vector, text)
    order, scores = rank_candidates(user, model.embeddings, candidates, model.counts, model.boost)
    by_id = {m["item_id"]: m for m in matches or ()}
    if by_id:
        relevance = np.array([by_id[i]["relevance"] if i in by_id else 0.0 for i in items])
        known = candidates >= FIRST_ID_INDEX
        personal = np.where(known, np.nan_to_num(scores, nan=0.0), 0.0)
        fused = np.full(len(items), -np.inf)
        matched = (relevance > 0) & known
        if matched.any():
            fused[matched] = search_scores(relevance[matched], personal[matched], relevance_weight)
        # Matching items first (by the fused score), then the rest as before.
        rest = {j: r for r, j in enumerate(order)}
        order = sorted(range(len(items)), key=lambda j: (not matched[j], -fused[j] if matched[j] else rest[j]))
    return [
        {
            "item_id": items[j],
            "score": None if np.isnan(scores[j]) else float(scores[j]),
            "known": bool(candidates[j] >= FIRST_ID_INDEX),
            "new_item": bool(catalogue.is_new(int(candidates[j]))),
            "discontinued": catalogue.is_discontinued(items[j], int(candidates[j])),
            "relevance": by_id[items[j]]["relevance"] if items[j] in by_id else (None if matches is None else 0.0),
            "matched_terms": list(by_id[items[j]]["matched_terms"]) if items[j] in by_id else [],
        }
        for j in order
    ]


def search_scores(relevance: np.ndarray, personal: np.ndarray, relevance_weight: float) -> np.ndarray:
    """The search score of N candidates that match a query: ``relevance_weight`` x the log
    of each one's relevance relative to the best match, plus the log-softmax of the
    personal scores over the candidates (the model's user @ item, or log popularity for a
    user without history). The weight decides how far the shopper's history may lift a
    weaker match above a stronger one: by the time a candidate matches half as well, its
    personal probability must be 2 ** weight times higher to pass."""
    relative = np.log(np.maximum(relevance, 1e-12) / relevance.max())
    shifted = personal - personal.max()
    return relevance_weight * relative + shifted - np.log(np.exp(shifted).sum())


@dataclass(frozen=True)
class SearchQuery:
    """What /search asks the ranker for one user: the /recommend query its fields build
    (k, user vector or None for no history, filters, history for reasons) and the
    retriever's matches (``{"item_id", "relevance", "matched_terms"}``)."""

    base: RecommendQuery
    matches: tuple[Mapping[str, Any], ...]
    text: str = ""  # the query as typed: a query-aware model scores with it


def search_items(model: RankerModel, q: SearchQuery, relevance_weight: float, per_item: int) -> list[dict]:
    """The best ``k`` matches for the user, with why: the query words each matched and the
    history events behind the personal part. The matches' search scores go into a
    catalogue-wide row that ranks through ``top_k``, so the /recommend filters (purchased,
    categories, discontinued) apply as they do there; no match, no result."""
    base, catalogue = q.base, model.catalogue
    idx = catalogue.item_indices([m["item_id"] for m in q.matches]) if q.matches else np.zeros(0, np.int64)
    known = np.flatnonzero(idx >= FIRST_ID_INDEX)
    if not len(known):
        return []
    chosen = torch.from_numpy(idx[known]).to(model.embeddings.device)
    personal = _personal_scores(model, base, q.text, chosen)
    relevance = np.array([q.matches[j]["relevance"] for j in known])
    row = torch.full((1, model.embeddings.shape[0]), float("-inf"), device=model.embeddings.device)  # (1, V)
    row[0, chosen] = torch.from_numpy(search_scores(relevance, personal.double().cpu().numpy(), relevance_weight)).to(row)
    picked, scores = top_k(row, [base.k], [_filter(model, base)], model.item_category, model.blocked())[0]
    match_of = dict(zip(idx[known].tolist(), known.tolist()))
    ranked = _with_reasons(model, base, picked, scores, per_item)
    for item, index in zip(ranked, picked.tolist()):
        match = q.matches[match_of[index]]
        terms = list(match["matched_terms"])
        item.update(relevance=float(match["relevance"]), matched_terms=terms)
        matched = "matches " + ", ".join(f'"{t}"' for t in terms)
        item["reason"] = matched if item["reason"] == "popular item" else f"{matched}; {item['reason']}"
    return ranked


def _user_vector(model: RankerModel, vector: np.ndarray | None, text: str) -> torch.Tensor | None:
    """The vector items are scored with: a query-aware model's query-aware one when there
    is a query (``SequenceEncoder.with_query``; the zero state for a shopper without
    history), else the user's own; None without history or query (popularity)."""
    encoder = None if model.serving is None else model.serving.encoder
    user = None if vector is None else torch.as_tensor(np.asarray(vector), dtype=torch.float32).to(model.embeddings)
    if encoder is None or not encoder.config.uses_queries or not text:
        return user
    config = encoder.config
    tokens = token_matrix([text], config.query_buckets, config.max_query_tokens).to(model.embeddings.device)
    if user is None:
        user = torch.zeros(model.embeddings.shape[1]).to(model.embeddings)
    with torch.no_grad():
        return encoder.with_query(user[None], tokens)[0]  # (D,)


def _personal_scores(model: RankerModel, base: RecommendQuery, text: str, chosen: torch.Tensor) -> torch.Tensor:
    """The model's score of each chosen match for this shopper (``_user_vector``), or log
    popularity for a shopper without history and a model without the query part."""
    vector = _user_vector(model, base.vector, text)
    if vector is None:
        return torch.log1p(model.counts[chosen].double())
    personal = model.embeddings[chosen] @ vector
    return personal if model.boost is None else personal + model.boost[chosen]


def _filter(model: RankerModel, q: RecommendQuery) -> Filter:
    exclude = model.catalogue.item_indices(q.exclude)
    categories = None if q.categories is None else np.asarray(model.catalogue.known_categories(q.categories), dtype=np.int64)
    return Filter(exclude=exclude[exclude >= FIRST_ID_INDEX], categories=categories)


def _item(model: RankerModel, index: int, score: float, reason: str, because: list[dict]) -> dict:
    return {"item_id": model.catalogue.raw_id(index), "score": score, "reason": reason, "because": because,
            "new_item": model.catalogue.is_new(index)}


def _with_reasons(model: RankerModel, q: RecommendQuery, indices: np.ndarray, scores: np.ndarray, per_item: int) -> list[dict]:
    if q.vector is None:
        return [_item(model, i, float(s), "popular item", []) for i, s in zip(indices.tolist(), scores.tolist())]
    history_items = model.catalogue.item_indices(raw for raw, _ in q.history)
    contributions = explain(indices, history_items, [t for _, t in q.history], model.embeddings, per_item)
    out = []
    for i, s, contrib in zip(indices.tolist(), scores.tolist(), contributions):
        because = [{"item_id": model.catalogue.raw_id(h), "event_type": t, "weight": w} for h, t, w in contrib]
        reason = reason_text([(b["item_id"], b["event_type"], b["weight"]) for b in because])
        out.append(_item(model, i, float(s), reason, because))
    return out
