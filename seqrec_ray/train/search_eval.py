"""Offline search evaluation: rank the whole catalogue for held-out (user, query, time) rows.

Each test row is an engagement a query led to (``search_index.query_sources``: a click
carrying its query, or an engagement after a search in the same session) in a log the
model never saw (e.g. ``jobs/split_rows.py``'s test part). The user's history is that
user's events in the artifacts before the row's time. Every ranker scores every item;
the target's rank counts ties against it (``metrics.target_ranks``), and a target outside
the vocabulary is a miss for all. Nothing is masked: a shopper may click again what they
clicked before.

Rankers in one table: popularity; the exact normalised query's most-engaged item in the
training log (popularity below); BM25 (the artifacts' tantivy index over catalogue text
and past queries; popularity below the matches); the model without the query (what
``/recommend`` would show); the model without the history (query only); the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from seqrec_ray.models import scoring
from seqrec_ray.models.query import query_hash, token_matrix

from .metrics import RankingMetrics, target_ranks

SEARCH_KS = (1, 5, 10)
REPORTED = ("hr@1", "mrr@5", "ndcg@10", "hr@10")
RANKERS = ("popularity", "exact query", "bm25", "model, no query", "model, query only", "model")
TEST_FORMATS = ("bestbuy", "events")
NEVER_RANKED = 1 << 40  # the rank of a target outside the vocabulary: a miss at every K
MATCHED = 1e6  # lifts every lexical match above every popularity-only score


@dataclass(frozen=True)
class SearchEvalConfig:
    data_dir: str = field(metadata={"help": "featurize artifacts of the training log"})
    checkpoint_dir: str = field(metadata={"help": "a checkpoint trained on those artifacts"})
    test_file: str = field(metadata={"help": "held-out log rows (the format of --format)"})
    format: str = field(default="bestbuy", metadata={"help": " | ".join(TEST_FORMATS)})
    batch_size: int = 512
    session_gap_seconds: float = 1800.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.format not in TEST_FORMATS:
            raise ValueError(f"format must be one of {TEST_FORMATS}, got {self.format!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        for name in ("data_dir", "checkpoint_dir"):
            if not Path(getattr(self, name)).is_dir():
                raise FileNotFoundError(f"{name} {getattr(self, name)!r} is not a directory")
        if not Path(self.test_file).is_file():
            raise FileNotFoundError(f"test_file {self.test_file!r} is not a file")


def read_search_tests(path: str, fmt: str, session_gap_seconds: float = 1800.0) -> tuple[pa.Table, dict]:
    """The engagements a query led to in a log file: (user_id, item_id, query, timestamp),
    and the row counts (read, rejected by validation, test rows)."""
    from seqrec_ray import schema as S
    from seqrec_ray.data import events as E
    from seqrec_ray.data.readers import iter_file_batches
    from seqrec_ray.data.search_index import query_sources
    from seqrec_ray.data.validate import ValidateConfig, validate

    kept, read, rejected = [], 0, 0
    for batch in iter_file_batches(path, fmt):
        batch = batch.append_column(E.ORDER, E.order_keys(0, read, batch.num_rows))
        read += batch.num_rows
        good, bad = validate(batch, ValidateConfig.for_format(fmt))
        kept.append(good)
        rejected += bad.num_rows
    if not kept or not sum(t.num_rows for t in kept):
        raise ValueError(f"{path}: no valid rows to evaluate ({read} read, {rejected} rejected)")
    events = E.sessionize(E.sort_events(pa.concat_tables(kept)), session_gap_seconds)
    source, _ = query_sources(events)
    rows = np.flatnonzero(source >= 0)
    table = pa.table({
        S.USER_ID: events[S.USER_ID].take(pa.array(rows)).cast(pa.string()),
        S.ITEM_ID: events[S.ITEM_ID].take(pa.array(rows)).cast(pa.string()),
        S.QUERY: events[S.QUERY].take(pa.array(source[rows])),
        S.TIMESTAMP: events[S.TIMESTAMP].take(pa.array(rows)),
    })
    return table, {"rows_read": read, "rows_rejected": rejected, "test_rows": table.num_rows}


class UserHistories:
    """Each user's events in the artifacts, for the inputs "every event before time t"."""

    FEATURES = ("items", "event_types", "categories", "gap_buckets")

    def __init__(self, sequences: pa.Table) -> None:
        self.row = {u: i for i, u in enumerate(sequences.column("user_id").to_pylist())}
        self.lists = {name: sequences.column(name).to_pylist() for name in (*self.FEATURES, "timestamps")}

    def features(self, users: list[str], times: np.ndarray, max_len: int) -> dict[str, torch.Tensor]:
        """LEFT-padded (B, T) inputs of each user's last ``max_len`` events before its time."""
        picked = []
        for user, t in zip(users, times):
            i = self.row.get(user)
            if i is None:
                picked.append(None)
                continue
            end = int(np.searchsorted(self.lists["timestamps"][i], t, side="left"))
            picked.append((i, max(0, end - max_len), end))
        width = max([1] + [end - start for p in picked if p for _, start, end in [p]])
        out = {name: torch.zeros(len(users), width, dtype=torch.int64) for name in self.FEATURES}
        for b, p in enumerate(picked):
            if p is None or p[2] == p[1]:
                continue
            i, start, end = p
            for name in self.FEATURES:
                out[name][b, width - (end - start):] = torch.tensor(self.lists[name][i][start:end])
        return out


class LexicalBaselines:
    """Popularity, the exact query's most-engaged items and BM25, as (B, V) scores."""

    def __init__(self, sequences: pa.Table, num_items: int, data_dir: str, vocab) -> None:
        import pyarrow.compute as pc

        from seqrec_ray.data.search_index import SearchIndex, has_search_index

        items = pc.list_flatten(sequences["items"]).to_numpy().astype(np.int64)
        train = pc.list_flatten(sequences["splits"]).to_numpy() == 0
        queries = (pc.list_flatten(sequences["queries"]).to_numpy().astype(np.int64)
                   if "queries" in sequences.column_names else np.zeros(len(items), dtype=np.int64))
        self.popularity = np.bincount(items[train], minlength=num_items).astype(np.float64)
        self.popularity[: scoring.FIRST_ITEM_INDEX] = 0.0
        self.tie_break = self.popularity / (self.popularity.max() + 1.0)  # in [0, 1)
        self.by_query: dict[int, dict[int, float]] = {}
        for q, item in zip(queries[train & (queries != 0)].tolist(), items[train & (queries != 0)].tolist()):
            counts = self.by_query.setdefault(q, {})
            counts[item] = counts.get(item, 0.0) + 1.0
        self.index = SearchIndex(data_dir) if has_search_index(data_dir) else None
        self.vocab = vocab
        self.num_items = num_items

    def close(self) -> None:
        if self.index is not None:
            self.index.close()

    def scores(self, name: str, texts: list[str]) -> torch.Tensor:
        out = np.tile(self.tie_break if name != "popularity" else self.popularity, (len(texts), 1))
        for b, text in enumerate(texts):
            if name == "exact query":
                for item, count in self.by_query.get(query_hash(text), {}).items():
                    out[b, item] += count
            elif name == "bm25" and self.index is not None:
                for match in self.index.search(text, self.num_items):
                    item = self.vocab.item_index(match.item_id)
                    if item >= scoring.FIRST_ITEM_INDEX:
                        out[b, item] = MATCHED + match.relevance
        return torch.from_numpy(out)


def run_search_evaluation(config: SearchEvalConfig, progress: bool = True) -> dict:
    """The table of ``RANKERS`` x ``REPORTED`` on the test rows, and the share of the model's
    gain over the query-only model that its use of the history explains."""
    from seqrec_ray.data.artifacts import load_sequences
    from seqrec_ray.data.vocab import load_vocab

    from .checkpoint import load_checkpoint

    tests, counts = read_search_tests(config.test_file, config.format, config.session_gap_seconds)
    loaded = load_checkpoint(config.checkpoint_dir, device=config.device)
    model, vocab = loaded.model, load_vocab(config.data_dir)
    if vocab.item_raw_ids != loaded.vocab.item_raw_ids:
        raise ValueError(f"{config.checkpoint_dir} was trained on another item vocabulary than {config.data_dir}")
    sequences = load_sequences(config.data_dir)
    histories = UserHistories(sequences)
    lexical = LexicalBaselines(sequences, vocab.num_items, config.data_dir, vocab)
    metrics = {name: RankingMetrics(SEARCH_KS) for name in RANKERS}
    users = tests.column("user_id").to_pylist()
    texts = [t or "" for t in tests.column("query").to_pylist()]
    times = tests.column("timestamp").to_numpy()
    targets = torch.from_numpy(vocab.item_indices(tests.column("item_id").to_pylist()))
    try:
        for start in range(0, tests.num_rows, config.batch_size):
            end = min(start + config.batch_size, tests.num_rows)
            batch_scores = _batch_scores(model, lexical, histories, users[start:end], texts[start:end],
                                         times[start:end], config.device)
            target = targets[start:end]
            known = target >= scoring.FIRST_ITEM_INDEX
            for name, scores in batch_scores.items():
                ranks = target_ranks(scoring.mask_unrankable(scores.double()), target.clamp(min=0))
                metrics[name].add(torch.where(known, ranks, torch.full_like(ranks, NEVER_RANKED)))
            if progress:
                print(f"[evaluate_search] {end}/{tests.num_rows} rows", flush=True)
    finally:
        lexical.close()
    table = {name: {k: m.to_dict()[k] for k in REPORTED} for name, m in metrics.items()}
    return {
        **counts,
        "unknown_targets": int((~(targets >= scoring.FIRST_ITEM_INDEX)).sum()),
        "query_model": model.config.uses_queries,
        "metrics": table,
        "personalisation_share": _personalisation_share(table),
        "test_file": config.test_file,
        "checkpoint": config.checkpoint_dir,
    }


@torch.no_grad()
def _batch_scores(model, lexical: LexicalBaselines, histories: UserHistories, users: list[str],
                  texts: list[str], times: np.ndarray, device: str) -> dict[str, torch.Tensor]:
    out = {name: lexical.scores(name, texts) for name in ("popularity", "exact query", "bm25")}
    features = {k: v.to(device) for k, v in histories.features(users, times, model.config.max_len).items()}
    empty = {k: torch.zeros(len(users), 1, dtype=torch.int64, device=device) for k in features}
    out["model, no query"] = model.score(features).cpu()
    if model.config.uses_queries:
        tokens = token_matrix(texts, model.config.query_buckets, model.config.max_query_tokens).to(device)
        out["model, query only"] = model.score({**empty, "query_tokens": tokens}).cpu()
        out["model"] = model.score({**features, "query_tokens": tokens}).cpu()
    else:  # a model without the query part: its query-only and full rows are its best guesses
        out["model, query only"] = model.score(empty).cpu()
        out["model"] = out["model, no query"]
    return out


def _personalisation_share(table: dict) -> dict:
    """Per metric: (model - query only) / (model - popularity): the part of the model's gain
    over popularity that the shopper's history brings (NaN when there is no gain)."""
    out = {}
    for k in REPORTED:
        gain = table["model"][k] - table["popularity"][k]
        out[k] = (table["model"][k] - table["model, query only"][k]) / gain if gain > 0 else math.nan
    return out


def format_search_table(result: dict) -> str:
    lines = [f"{result['test_rows']} test rows ({result['unknown_targets']} targets outside the vocabulary, "
             f"{result['rows_rejected']} rows rejected); no history masking",
             f"{'ranker':<20}" + "".join(f"{k:>10}" for k in REPORTED)]
    for name, row in result["metrics"].items():
        lines.append(f"{name:<20}" + "".join(f"{row[k]:>10.4f}" for k in REPORTED))
    share = result["personalisation_share"]
    lines.append(f"{'history share':<20}" + "".join(f"{share[k]:>10.3f}" for k in REPORTED))
    return "\n".join(lines)


def save_search_report(result: dict, output_dir: str | Path) -> tuple[Path, Path]:
    """``search_eval.json`` and ``search_eval.png`` (a bar per ranker and metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = output_dir / "search_eval.json", output_dir / "search_eval.png"
    json_path.write_text(json.dumps(result, indent=2))
    names = list(result["metrics"])
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        ax.bar([i + j * width for i in range(len(REPORTED))], [result["metrics"][name][k] for k in REPORTED],
               width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(REPORTED))], REPORTED)
    ax.set(ylabel="share of test rows", title=f"search, {result['test_rows']} held-out rows", ylim=(0, 1))
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
    return json_path, png_path
