"""The item and category vocabulary: built by featurize, loaded by every later stage.

Building: count (item, category) pairs per block, combine the small partial counts, keep
ids seen at least ``min_count`` times, and encode raw ids. Using: ``Vocab`` (raw id <->
index maps, each item's category, the training-log counts) loaded with ``load_vocab`` from
an artifacts directory or a checkpoint, and ``check_same_items``, the one test that two
vocabularies give item indices the same meaning.

Vocab tables (docs/contracts.md §2) hold every index from 0: row 0 ``<pad>``, row 1
``<oov>``, real ids from 2, ordered by count (descending) then raw id, so the same counts
always give the same indices.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqrec_ray import schema as S

VOCAB_DIR = "vocab"
ITEMS_FILE = "items.parquet"
CATEGORIES_FILE = "categories.parquet"
COUNT = "count"
ITEM_VOCAB_SCHEMA = pa.schema([("index", pa.int64()), ("raw_id", pa.string()),
                               ("count", pa.int64()), ("category_index", pa.int64())])
CATEGORY_VOCAB_SCHEMA = pa.schema([("index", pa.int64()), ("raw_id", pa.string()),
                                   ("count", pa.int64())])
PAIR_COUNTS_SCHEMA = pa.schema([(S.ITEM_ID, pa.string()), (S.CATEGORY_ID, pa.string()),
                                (COUNT, pa.int64())])


@dataclass(frozen=True)
class VocabConfig:
    min_item_count: int = 1
    min_category_count: int = 1

    def __post_init__(self) -> None:
        for name in ("min_item_count", "min_category_count"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def string_codes(col) -> tuple[np.ndarray, pa.Array]:
    """(int64 codes, -1 for null; the distinct values) of a string column."""
    encoded = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray)
                                   else col)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary


def _take_or_null(values: pa.Array, codes: np.ndarray) -> pa.Array:
    """values[codes] as strings, null where a code is -1."""
    return pc.take(values.cast(pa.string()), pa.array(np.where(codes >= 0, codes, None),
                                                     pa.int64(), from_pandas=True))


def _pair_sums(items, categories, weights: np.ndarray | None) -> pa.Table:
    """Sum ``weights`` (or count rows) per (item, category); hashing and integer sorts
    instead of a string group-by, which is several times slower here."""
    item_codes, item_values = string_codes(items)
    cat_codes, cat_values = string_codes(categories)
    width = len(cat_values) + 1  # slot 0: no category
    unique, inverse = np.unique(item_codes * width + cat_codes + 1, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=weights, minlength=len(unique))
    cat = unique % width - 1
    return pa.table({
        S.ITEM_ID: pc.take(item_values.cast(pa.string()), pa.array(unique // width)),
        S.CATEGORY_ID: _take_or_null(cat_values, cat),
        COUNT: pa.array(np.rint(sums).astype(np.int64)),
    }, schema=PAIR_COUNTS_SCHEMA)


def count_pairs(events: pa.Table) -> pa.Table:
    """Events -> (item_id, category_id, count): one block's partial counts."""
    if events.num_rows == 0:
        return PAIR_COUNTS_SCHEMA.empty_table()
    return _pair_sums(events[S.ITEM_ID], events[S.CATEGORY_ID], None)


def combine_counts(partials: Iterable[pa.Table]) -> pa.Table:
    """Sum partial pair counts (from blocks or buckets) into one table."""
    tables = [t.cast(PAIR_COUNTS_SCHEMA) for t in partials if t.num_rows]
    if not tables:
        return PAIR_COUNTS_SCHEMA.empty_table()
    pairs = pa.concat_tables(tables)
    return _pair_sums(pairs[S.ITEM_ID], pairs[S.CATEGORY_ID],
                      pairs[COUNT].to_numpy().astype(np.float64))


def _lexical_rank(values: pa.Array) -> np.ndarray:
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    return pc.rank(values, sort_keys="ascending").to_numpy().astype(np.int64)


def _index_ids(codes: np.ndarray, values: pa.Array, counts: np.ndarray, min_count: int):
    """Per distinct id: its index (-1 = oov) ordered by count desc then raw id, and the
    vocab table columns."""
    total = np.bincount(codes[codes >= 0], weights=counts[codes >= 0], minlength=len(values))
    total = np.rint(total).astype(np.int64)
    kept = np.flatnonzero(total >= min_count)
    kept = kept[np.lexsort((_lexical_rank(values)[kept], -total[kept]))]
    index_of = np.full(len(values), -1, dtype=np.int64)
    index_of[kept] = np.arange(len(kept)) + S.FIRST_ID_INDEX
    columns = {
        "index": pa.array(np.arange(len(kept) + 2, dtype=np.int64)),
        "raw_id": pa.concat_arrays([pa.array([S.PAD_TOKEN, S.OOV_TOKEN]),
                                    pc.take(values.cast(pa.string()), pa.array(kept))]),
        COUNT: pa.array(np.concatenate([[0, total.sum() - total[kept].sum()], total[kept]])),
    }
    return index_of, columns


def _top_category(item_codes, cat_codes, counts, cat_rank, n_items) -> np.ndarray:
    """Per item code, the code of its most frequent category (ties: smallest raw id); -1
    when it has none."""
    known = cat_codes >= 0
    i, c, n = item_codes[known], cat_codes[known], counts[known]
    order = np.lexsort((cat_rank[c], -n, i))
    i, c = i[order], c[order]
    first = np.ones(len(i), dtype=bool)
    first[1:] = i[1:] != i[:-1]
    top = np.full(n_items, -1, dtype=np.int64)
    top[i[first]] = c[first]
    return top


def build_vocabs(pairs: pa.Table, config: VocabConfig) -> tuple[pa.Table, pa.Table]:
    """Combined pair counts -> (item vocab, category vocab)."""
    item_codes, items = string_codes(pairs[S.ITEM_ID])
    cat_codes, cats = string_codes(pairs[S.CATEGORY_ID])
    counts = pairs[COUNT].to_numpy().astype(np.float64)
    cat_index_of, cat_columns = _index_ids(cat_codes, cats, counts, config.min_category_count)
    item_index_of, item_columns = _index_ids(item_codes, items, counts, config.min_item_count)
    top = _top_category(item_codes, cat_codes, counts, _lexical_rank(cats), len(items))
    kept_items = np.flatnonzero(item_index_of >= 0)
    kept_items = kept_items[np.argsort(item_index_of[kept_items])]
    top = top[kept_items]
    category = np.full(len(top), -1, dtype=np.int64)
    category[top >= 0] = cat_index_of[top[top >= 0]]
    item_columns["category_index"] = pa.array(np.concatenate(
        [[S.PAD_INDEX, S.OOV_INDEX], np.where(category >= 0, category, S.OOV_INDEX)]))
    return (pa.table(item_columns, schema=ITEM_VOCAB_SCHEMA),
            pa.table(cat_columns, schema=CATEGORY_VOCAB_SCHEMA))


def encode(raw: pa.Array | pa.ChunkedArray, vocab: pa.Table) -> pa.Array:
    """Raw ids -> int64 indices; unknown, rare and null ids -> OOV (1)."""
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    known = vocab["raw_id"].combine_chunks()[S.FIRST_ID_INDEX:]
    position = pc.index_in(raw, value_set=known)
    return pc.fill_null(pc.add(pc.cast(position, pa.int64()), S.FIRST_ID_INDEX), S.OOV_INDEX)


@dataclass(frozen=True)
class Vocab:
    """Index <-> raw id maps. Row 0 is padding and row 1 out-of-vocabulary in both tables."""

    item_raw_ids: tuple[str, ...]
    item_category: np.ndarray  # (V,) int64 category index of each item (1 = unknown, 0 = pad)
    item_counts: np.ndarray  # (V,) int64 training-log counts (the popularity prior)
    category_raw_ids: tuple[str, ...]
    _items: dict[str, int] = field(init=False, repr=False, compare=False)
    _categories: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.item_raw_ids)
        if n < S.FIRST_ID_INDEX:
            raise ValueError(f"an item vocabulary holds at least the pad and oov rows, got {n} rows")
        for name in ("item_category", "item_counts"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, item_raw_ids has {n}")
        object.__setattr__(self, "item_raw_ids", tuple(str(x) for x in self.item_raw_ids))
        object.__setattr__(self, "category_raw_ids", tuple(str(x) for x in self.category_raw_ids))
        object.__setattr__(self, "item_category", np.asarray(self.item_category, dtype=np.int64))
        object.__setattr__(self, "item_counts", np.asarray(self.item_counts, dtype=np.int64))
        # Pad and oov rows never map back from a raw id, even if a source used "<pad>".
        items = {raw: i for i, raw in enumerate(self.item_raw_ids) if i >= S.FIRST_ID_INDEX}
        cats = {raw: i for i, raw in enumerate(self.category_raw_ids) if i >= S.FIRST_ID_INDEX}
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_categories", cats)

    @property
    def num_items(self) -> int:
        """Item vocab size, counting pad and oov."""
        return len(self.item_raw_ids)

    @property
    def num_categories(self) -> int:
        return len(self.category_raw_ids)

    def item_index(self, raw_id: str) -> int:
        """Index of a raw item id; unknown or rare ids -> OOV (1)."""
        return self._items.get(str(raw_id), S.OOV_INDEX)

    def item_indices(self, raw_ids: Iterable[str]) -> np.ndarray:
        return np.fromiter((self._items.get(str(r), S.OOV_INDEX) for r in raw_ids), dtype=np.int64)

    def item_raw_id(self, index: int) -> str:
        return self.item_raw_ids[index]

    def category_index(self, raw_id: str | None) -> int:
        if raw_id is None:
            return S.OOV_INDEX
        return self._categories.get(str(raw_id), S.OOV_INDEX)

    def known_categories(self, raw_ids: Iterable[str]) -> list[int]:
        """Indices of the raw category ids this vocabulary knows (unknown ones dropped)."""
        return sorted({self._categories[r] for r in raw_ids if r in self._categories})


def write_vocab(items: pa.Table, categories: pa.Table, directory: str) -> None:
    """The two vocab tables into ``directory/vocab/`` (an artifacts dir or a checkpoint)."""
    base = os.path.join(directory, VOCAB_DIR)
    os.makedirs(base, exist_ok=True)
    pq.write_table(items, os.path.join(base, ITEMS_FILE))
    pq.write_table(categories, os.path.join(base, CATEGORIES_FILE))


def load_vocab(directory: str) -> Vocab:
    """From an artifacts directory or a checkpoint (either holds ``vocab/``)."""
    base = os.path.join(directory, VOCAB_DIR)
    items = pq.read_table(os.path.join(base, ITEMS_FILE)).sort_by("index")
    categories = pq.read_table(os.path.join(base, CATEGORIES_FILE)).sort_by("index")
    for name, table in (("items", items), ("categories", categories)):
        index = table["index"].to_numpy()
        if not np.array_equal(index, np.arange(len(index))):
            raise ValueError(f"{base}/{name}: indices are not 0..{len(index) - 1}")
    return Vocab(
        item_raw_ids=tuple(items["raw_id"].to_pylist()),
        item_category=items["category_index"].to_numpy(),
        item_counts=items["count"].to_numpy(),
        category_raw_ids=tuple(categories["raw_id"].to_pylist()),
    )


def check_same_items(data_dir: str, model_dir: str, what: str = "data") -> None:
    """Item indices mean a checkpoint's items only under its own vocabulary: ValueError
    naming both directories when ``data_dir``'s item vocabulary differs from ``model_dir``'s."""
    if load_vocab(str(data_dir)).item_raw_ids != load_vocab(str(model_dir)).item_raw_ids:
        raise ValueError(f"{what} {data_dir} and checkpoint {model_dir} have different item vocabularies: "
                         "item indices mean the checkpoint's items only under its own vocabulary "
                         "(was the data featurized again after training?)")


def _raw_ids(table: pa.Table) -> list[str]:
    return table.sort_by("index")["raw_id"].to_pylist()


def _merged_order(first: list[str], then: Iterable[str]) -> list[str]:
    """``first`` (pad, oov, ids...) in its order, then the ids of ``then`` not in it."""
    known = set(first[S.FIRST_ID_INDEX:])
    return first + [raw for raw in dict.fromkeys(then) if raw not in known]


def _remapped(items: pa.Table, categories: pa.Table, item_order: list[str], category_order: list[str],
              item_category_raw: dict[str, str | None]) -> tuple[pa.Table, pa.Table]:
    """Vocab tables in the given raw-id orders: counts from ``items``/``categories`` (0 for
    ids they lack), each item's category from ``item_category_raw`` (raw ids)."""
    item_counts = dict(zip(items["raw_id"].to_pylist()[S.FIRST_ID_INDEX:], items[COUNT].to_pylist()[S.FIRST_ID_INDEX:]))
    cat_counts = dict(zip(categories["raw_id"].to_pylist()[S.FIRST_ID_INDEX:],
                          categories[COUNT].to_pylist()[S.FIRST_ID_INDEX:]))
    cat_index = {raw: i for i, raw in enumerate(category_order) if i >= S.FIRST_ID_INDEX}
    oov_items, oov_cats = items[COUNT][S.OOV_INDEX].as_py(), categories[COUNT][S.OOV_INDEX].as_py()
    new_items = pa.table({
        "index": pa.array(np.arange(len(item_order), dtype=np.int64)),
        "raw_id": pa.array(item_order, pa.string()),
        COUNT: pa.array([0, oov_items] + [item_counts.get(r, 0) for r in item_order[S.FIRST_ID_INDEX:]], pa.int64()),
        "category_index": pa.array([S.PAD_INDEX, S.OOV_INDEX] + [
            cat_index.get(item_category_raw.get(r), S.OOV_INDEX) for r in item_order[S.FIRST_ID_INDEX:]], pa.int64()),
    }, schema=ITEM_VOCAB_SCHEMA)
    new_cats = pa.table({
        "index": pa.array(np.arange(len(category_order), dtype=np.int64)),
        "raw_id": pa.array(category_order, pa.string()),
        COUNT: pa.array([0, oov_cats] + [cat_counts.get(r, 0) for r in category_order[S.FIRST_ID_INDEX:]], pa.int64()),
    }, schema=CATEGORY_VOCAB_SCHEMA)
    return new_items, new_cats


def _item_categories(items: pa.Table, categories: pa.Table) -> dict[str, str | None]:
    cat_raw = categories.sort_by("index")["raw_id"].to_pylist()
    return {raw: (cat_raw[c] if c >= S.FIRST_ID_INDEX else None)
            for raw, c in zip(items["raw_id"].to_pylist()[S.FIRST_ID_INDEX:],
                              items["category_index"].to_pylist()[S.FIRST_ID_INDEX:])}


def add_catalogue_items(items: pa.Table, categories: pa.Table,
                        catalogue: Iterable[tuple[str, str | None]]) -> tuple[pa.Table, pa.Table]:
    """Vocab tables with the catalogue's items and categories that the log lacks appended
    (count 0, sorted by raw id) after the log's own; an item the log knew without a
    category takes the catalogue's. ``catalogue``: (raw item id, raw category id or None)."""
    pairs = dict(catalogue)
    known = _item_categories(items, categories)
    item_category = {**{r: c for r, c in pairs.items() if c is not None}, **{r: c for r, c in known.items() if c is not None}}
    item_order = _merged_order(_raw_ids(items), sorted(pairs))
    category_order = _merged_order(_raw_ids(categories), sorted({c for c in pairs.values() if c is not None}))
    return _remapped(items, categories, item_order, category_order, item_category)


def align_to_base(items: pa.Table, categories: pa.Table, base_dir: str) -> tuple[pa.Table, pa.Table]:
    """Grow an earlier vocabulary (``base_dir``: artifacts or a checkpoint) with the new
    tables: every earlier id keeps its index (also one absent now, with count 0), new ids
    follow in their own order, counts are the new ones. Checkpoints of the earlier
    vocabulary then grow into this one (``train --init-from``)."""
    base = os.path.join(base_dir, VOCAB_DIR)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"--base-vocab {base_dir}: no {VOCAB_DIR}/ (an artifacts directory or checkpoint)")
    base_items = pq.read_table(os.path.join(base, ITEMS_FILE))
    base_categories = pq.read_table(os.path.join(base, CATEGORIES_FILE))
    item_order = _merged_order(_raw_ids(base_items), _raw_ids(items)[S.FIRST_ID_INDEX:])
    category_order = _merged_order(_raw_ids(base_categories), _raw_ids(categories)[S.FIRST_ID_INDEX:])
    item_category = {**_item_categories(base_items, base_categories),
                     **{r: c for r, c in _item_categories(items, categories).items() if c is not None}}
    return _remapped(items, categories, item_order, category_order, item_category)
