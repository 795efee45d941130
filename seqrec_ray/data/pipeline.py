"""Featurization: wires the pure stages into three streaming passes, on Ray Data
(``run_featurize``) or in this process (``featurize_in_process``, same passes and output).

    input files --(1 task per file: read, validate, hash-bucket users)--> WORK/buckets/B/
    buckets     --(1 task per bucket: sort, dedupe, sessionize, profiles, counts)-->
    driver      --(combine small per-bucket counts)--> OUTPUT/vocab/
    buckets     --(1 task per bucket: encode)--> OUTPUT/sequences/

The event log never reaches the driver: it only sees per-task counts and the
vocabulary-sized item counts. Every event of a user lands in one bucket, so duplicates
and sessions are handled per user without a per-user ``groupby``. Tasks read and write
``OUTPUT`` directly, so on a multi-node cluster it must be storage every node sees.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqrec_ray import schema as S
from seqrec_ray.data import forget as F
from seqrec_ray.data import passes, readers
from seqrec_ray.data import vocab as V
from seqrec_ray.data.artifacts import ARTIFACTS_VERSION, MANIFEST
from seqrec_ray.data.catalogue import CATALOGUE_DIR
from seqrec_ray.data.catalogue_readers import CATALOGUE_FORMATS
from seqrec_ray.data.profiles import ProfileConfig
from seqrec_ray.data.search_index import SEARCH_DIR
from seqrec_ray.data.sequences import SequenceConfig
from seqrec_ray.data.validate import POSITIONAL_TIME_FORMATS, ValidateConfig
from seqrec_ray.data.vocab import VOCAB_DIR
from seqrec_ray.store.base import StoredEvent

WORK_DIR = "_work"
OUTPUT_PARTS = ("sequences", "profiles", "rejects", VOCAB_DIR, CATALOGUE_DIR, SEARCH_DIR, WORK_DIR)
BYTES_PER_BUCKET = 32 << 20  # ~1M events per bucket: few buckets, few vocab loads


_ERROR = "_error"


class InputError(ValueError):
    """An input file could not be read as the given format."""


class ManifestError(RuntimeError):
    """The row counts do not reconcile: featurization lost or invented rows."""


class NoValidRowsError(ValueError):
    """The input held no row to keep (empty, a header only, or every row rejected or of a
    forgotten user); raised after the rejects are written, so they can be looked at."""


@dataclass(frozen=True)
class FeaturizeConfig:
    input: str = field(metadata={"help": "a file, a directory or a glob"})
    format: str = field(metadata={"help": " | ".join(readers.FORMATS)})
    output: str = field(metadata={"help": "artifacts directory (its parts are replaced)"})
    validate: ValidateConfig | None = None  # None: the format's default time range
    vocab: V.VocabConfig = V.VocabConfig()
    sequence: SequenceConfig = SequenceConfig()
    profile: ProfileConfig | None = None  # None: time tags unless time is positional
    num_buckets: int | None = field(default=None, metadata={"help": "user hash buckets (default: from the input size)"})
    batch_rows: int = field(default=1_000_000, metadata={"help": "rows per read batch"})
    store: str | None = field(default=None, metadata={"help": (
        "bulk-load profiles and recent history into this store (URL or SQLite path)")})
    history_limit: int | None = field(default=None, metadata={"help": (
        "events per user loaded into the store (default: max-seq-len)")})
    keep_work: bool = field(default=False, metadata={"help": "keep OUTPUT/_work (intermediate buckets)"})
    forget: str | None = field(default=None, metadata={"help": (
        "deletion list: a file of user ids, one per line, whose rows are left out of every "
        "artifact (with --store, the store's forgotten users are left out too)")})
    items: str | None = field(default=None, metadata={"help": (
        "item catalogue (item_id + any of title, category_id, brand, price, attributes): its items "
        "join the vocabulary and OUTPUT/catalogue/ holds their content")})
    items_format: str = field(default="items", metadata={"help": " | ".join(CATALOGUE_FORMATS)})
    base_vocab: str | None = field(default=None, metadata={"help": (
        "grow this earlier vocabulary (artifacts dir or checkpoint): its ids keep their indices, "
        "new ids follow, so its checkpoints continue with train --init-from")})

    def __post_init__(self) -> None:
        if self.format not in readers.FORMATS:
            raise ValueError(f"unknown format {self.format!r}; known formats: "
                             f"{', '.join(readers.FORMATS)}")
        if not self.output:
            raise ValueError("output directory must be given")
        if self.num_buckets is not None and not 1 <= self.num_buckets <= 4096:
            raise ValueError(f"num_buckets must be in [1, 4096], got {self.num_buckets!r}")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows!r}")
        if self.history_limit is not None and self.history_limit < 1:
            raise ValueError(f"history_limit must be >= 1, got {self.history_limit!r}")
        if self.items_format not in CATALOGUE_FORMATS:
            raise ValueError(f"unknown items_format {self.items_format!r}; known: {', '.join(CATALOGUE_FORMATS)}")

    def resolved_validate(self) -> ValidateConfig:
        return self.validate or ValidateConfig.for_format(self.format)

    def resolved_profile(self) -> ProfileConfig:
        return self.profile or ProfileConfig(time_tags=self.format not in POSITIONAL_TIME_FORMATS)


def _auto_buckets(files: list[str]) -> int:
    size = sum(os.path.getsize(f) for f in files)
    return max(4, min(512, math.ceil(size / BYTES_PER_BUCKET)))


FanOut = Callable[..., list[dict]]


def _in_process(fn: Callable[..., dict], items: list[dict], input_errors: bool = False,
                **kwargs) -> list[dict]:
    """``_fan_out`` without Ray: the same calls, one after another, the same errors."""
    results, errors = [], []
    for item in items:
        try:
            results.append(fn(**item, **kwargs))
        except (ValueError, OSError) as err:
            if not input_errors:
                raise
            errors.append(f"{type(err).__name__}: {err}")
    if errors:
        raise InputError("; ".join(errors))
    return results


def _fan_out(fn: Callable[..., dict], items: list[dict], input_errors: bool = False,
             **kwargs) -> list[dict]:
    """Run ``fn(**item, **kwargs)`` once per item as Ray Data tasks; their result dicts.

    With ``input_errors``, a ValueError/OSError (a file of the wrong format, an unreadable
    file) comes back as an InputError naming the item, instead of a Ray traceback.
    """
    import ray

    def apply(batch):  # a one-row pyarrow batch -> its result as a JSON string
        import pyarrow as pa

        (row,) = batch.to_pylist()
        try:
            result = fn(**row, **kwargs)
        except (ValueError, OSError) as err:
            if not input_errors:
                raise
            result = {_ERROR: f"{type(err).__name__}: {err}"}
        return pa.table({"result": [json.dumps(result)]})

    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(apply, batch_size=1, batch_format="pyarrow", num_cpus=1)
    results = [json.loads(row["result"]) for row in ds.take_all()]
    errors = [r[_ERROR] for r in results if _ERROR in r]
    if errors:
        raise InputError("; ".join(errors))
    return results


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def run(self, name: str, fn: Callable, *args, **kwargs):
        start = time.perf_counter()
        self.log(f"[featurize] {name} ...")
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.log(f"[featurize] {name} done in {self.seconds[name]:.1f}s")
        return result


def _clean_output(output: str) -> None:
    """Remove this stage's previous outputs (only those: never the whole directory)."""
    for part in OUTPUT_PARTS:
        shutil.rmtree(os.path.join(output, part), ignore_errors=True)
    if os.path.exists(os.path.join(output, MANIFEST)):
        os.remove(os.path.join(output, MANIFEST))
    os.makedirs(os.path.join(output, "rejects"), exist_ok=True)


def _read_catalogue(config: FeaturizeConfig) -> tuple[pa.Table, pa.Table, int] | None:
    """(kept rows, rejects, rows read) of ``config.items``; None without one."""
    if not config.items:
        return None
    from seqrec_ray.data.catalogue import CatalogueError, validate_catalogue
    from seqrec_ray.data.catalogue_readers import read_catalogue

    table = read_catalogue(config.items, config.items_format)
    kept, rejects = validate_catalogue(table)
    if not kept.num_rows:
        raise CatalogueError(f"--items {config.items}: no usable catalogue row ({table.num_rows} read, "
                             f"{rejects.num_rows} rejected)")
    return kept, rejects, table.num_rows


def _build_vocab(layout: passes.Layout, buckets: int, config: FeaturizeConfig,
                 catalogue: tuple[pa.Table, pa.Table, int] | None) -> dict:
    """The vocabulary from the log's counts, then the earlier vocabulary it grows
    (``base_vocab``) and the catalogue's extra items; writes vocab/ and catalogue/."""
    from seqrec_ray.data.catalogue import write_catalogue

    paths = [layout.work_file(passes.COUNTS, b) for b in range(buckets)]
    pairs = V.combine_counts(pq.read_table(p) for p in paths if os.path.isfile(p))
    items, categories = V.build_vocabs(pairs, config.vocab)
    if config.base_vocab:
        items, categories = V.align_to_base(items, categories, config.base_vocab)
    if catalogue is not None:
        kept = catalogue[0]
        items, categories = V.add_catalogue_items(
            items, categories, zip(kept[S.ITEM_ID].to_pylist(), kept[S.CATEGORY_ID].to_pylist()))
    V.write_vocab(items, categories, layout.output)
    sizes = {"items": items.num_rows, "categories": categories.num_rows}
    if catalogue is not None:
        kept, rejects, rows_read = catalogue
        index = V.encode(kept[S.ITEM_ID], items).to_numpy()
        summary = write_catalogue(kept, rejects, index, layout.output, rows_read).to_dict()
        summary["items_not_in_log"] = int(np.count_nonzero(
            items[V.COUNT].to_numpy()[index] == 0))
        summary["input"] = os.path.abspath(config.items)
        summary["format"] = config.items_format
        sizes["catalogue"] = summary
    return sizes


def _build_search_index(layout: passes.Layout, buckets: int,
                        catalogue: tuple[pa.Table, pa.Table, int] | None) -> dict | None:
    """OUTPUT/search/ from the catalogue's text and the log's query -> engagement pairs;
    None (and no index) when the data has neither."""
    from seqrec_ray.data.search_index import (
        combine_query_pairs,
        combine_query_texts,
        write_query_texts,
        write_search_index,
    )

    paths = [layout.work_file(passes.QUERIES, b) for b in range(buckets)]
    pairs = combine_query_pairs(pq.read_table(p) for p in paths if os.path.isfile(p))
    if catalogue is None and not pairs.num_rows:
        return None
    summary = write_search_index(None if catalogue is None else catalogue[0], pairs, layout.output).to_dict()
    paths = [layout.work_file(passes.QUERY_TEXTS, b) for b in range(buckets)]
    texts = combine_query_texts(pq.read_table(p) for p in paths if os.path.isfile(p))
    write_query_texts(texts, layout.output)
    return {**summary, "queries": texts.num_rows}


def _load_store(url: str, layout: passes.Layout, buckets: int, history_limit: int) -> dict:
    from seqrec_ray.store import StoredEvent, open_store

    totals = {"profiles": 0, "events": 0}
    with open_store(url) as store:
        for b in range(buckets):
            history = layout.work_file(passes.HISTORY, b)
            if not os.path.isfile(history):
                continue
            profiles = pq.read_table(layout.output_file("profiles", f"{b:04d}")).to_pylist()
            events = (StoredEvent(**row) for row in pq.read_table(history).to_pylist())
            n_profiles, n_events = store.bulk_load(profiles, events, history_limit)
            totals["profiles"] += n_profiles
            totals["events"] += n_events
    return totals


def _sum(results: list[dict], key: str) -> int:
    return sum(r[key] for r in results)


def _reasons(results: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        for reason, n in r["rejected_by_reason"].items():
            out[reason] = out.get(reason, 0) + n
    return dict(sorted(out.items()))


def check_counts(read: list[dict], bucketed: list[dict], encoded: list[dict]) -> dict:
    """Reconcile every pass's counts; raise ManifestError naming the first mismatch."""
    counts = {"rows_read": _sum(read, "rows_read"), "rows_rejected": _sum(read, "rows_rejected"),
              "rows_duplicate": _sum(bucketed, "rows_duplicate"),
              "rows_forgotten": sum(r.get("rows_forgotten", 0) for r in read)}
    counts["rows_kept"] = _sum(bucketed, "rows_in") - counts["rows_duplicate"]
    checks = [
        ("rows_read == rows read-kept + rows_rejected + rows_forgotten", counts["rows_read"],
         _sum(read, "rows_kept") + counts["rows_rejected"] + counts["rows_forgotten"]),
        ("rows bucketed == rows read-kept", _sum(bucketed, "rows_in"), _sum(read, "rows_kept")),
        ("rows_kept == events in sequences + cold-item training events left out", counts["rows_kept"],
         _sum(encoded, "events") + sum(r.get("cold_removed", 0) for r in encoded)),
        ("users profiled == users with sequences", _sum(bucketed, "users"),
         _sum(encoded, "users")),
        ("rows_read == rows_kept + rows_rejected + rows_duplicate + rows_forgotten",
         counts["rows_read"], counts["rows_kept"] + counts["rows_rejected"]
         + counts["rows_duplicate"] + counts["rows_forgotten"]),
        ("rejected_by_reason sums to rows_rejected", sum(_reasons(read).values()),
         counts["rows_rejected"]),
    ]
    for name, left, right in checks:
        if left != right:
            raise ManifestError(f"row counts do not reconcile: {name} fails ({left} != {right})")
    return counts


def _data_version(files: list[str], config: FeaturizeConfig, by_content: bool = False,
                  forget_version: str | None = None, catalogue_version: str | None = None) -> str:
    """A short hash of the inputs (path, size and mtime; or their bytes), the config, the
    deletion list applied (its version: the list file may change under the same path) and
    the catalogue's content."""
    digest = hashlib.sha256()
    if catalogue_version is not None:
        digest.update(f"catalogue\0{catalogue_version}\n".encode())
    if forget_version is not None:
        digest.update(f"forget\0{forget_version}\n".encode())
    for f in files:
        if by_content:
            with open(f, "rb") as data:
                digest.update(hashlib.sha256(data.read()).digest())
        else:
            st = os.stat(f)
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    digest.update(json.dumps(dataclasses.asdict(config), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def run_featurize(config: FeaturizeConfig, log: Callable[[str], None] = print, in_process: bool = False) -> dict:
    """Featurize ``config.input`` into ``config.output`` on Ray Data; returns the manifest.

    Needs a running Ray (``ray.init`` is the caller's job) unless ``in_process``, which runs
    the same tasks one after another in this process. Raises FileNotFoundError /
    ValueError for bad input before any Ray work, InputError for a file that is not of the
    format, NoValidRowsError (after writing the rejects) when no row is kept, and
    ManifestError if counts do not reconcile. Rows of the users on the deletion list
    (``config.forget`` and, with ``config.store``, its ``forgotten_users``) are left out
    of every artifact and counted as ``rows_forgotten``.
    """
    return _featurize(config, _in_process if in_process else _fan_out, log)


IN_PROCESS_INPUT = "<in-process events>"


def featurize_in_process(events: pa.Table | Iterable[StoredEvent], output: str,
                         config: FeaturizeConfig | None = None,
                         log: Callable[[str], None] = lambda _: None, **options) -> dict:
    """Featurize events held in memory (an ``EVENT_SCHEMA`` table or ``StoredEvent``s) into
    ``output`` without Ray: the same passes, artifacts and manifest as ``run_featurize``.

    Options are ``FeaturizeConfig`` fields (e.g. ``store=URL``), or a whole ``config``
    whose ``input``/``format``/``output`` are replaced. The manifest's ``input`` is
    ``<in-process events>`` and its ``data_version`` hashes the events themselves, so the
    same events give the same version.
    """
    if config is not None and options:
        raise ValueError(f"give either a config or options, not both (got options {sorted(options)})")
    if not isinstance(events, pa.Table):
        events = pa.Table.from_pylist([e.as_dict() for e in events], schema=S.EVENT_SCHEMA)
    with tempfile.TemporaryDirectory(prefix="seqrec-featurize-") as tmp:
        path = os.path.join(tmp, "events.parquet")
        pq.write_table(events, path)
        base = config or FeaturizeConfig(input=tmp, format="events", output=output, **options)
        resolved = dataclasses.replace(base, input=tmp, format="events", output=output)
        return _featurize(resolved, _in_process, log, input_label=IN_PROCESS_INPUT)


def _forget_ids(config: FeaturizeConfig) -> frozenset[str]:
    """The deletion list: ``config.forget``'s ids and the store's forgotten users."""
    ids = set(F.read_user_ids(config.forget)) if config.forget else set()
    if config.store:
        from seqrec_ray.store import open_store

        with open_store(config.store) as store:
            ids |= {user for user, _ in store.forgotten_users()}
    return frozenset(ids)


def _no_valid_rows(read: list[dict], config: FeaturizeConfig,
                   input_label: str | None) -> NoValidRowsError:
    where = input_label or config.input
    if not _sum(read, "rows_read"):
        return NoValidRowsError(f"no valid rows: {where} holds no rows (empty files or a "
                                "header only)")
    reasons = ", ".join(f"{reason}: {n}" for reason, n in _reasons(read).items())
    return NoValidRowsError(
        f"no valid rows in {where}: {_sum(read, 'rows_read')} rows read, "
        f"{_sum(read, 'rows_rejected')} rejected ({reasons or 'none'}), "
        f"{sum(r.get('rows_forgotten', 0) for r in read)} of forgotten users; the rejected "
        f"rows and their reasons are in {os.path.join(config.output, 'rejects')}/")


def _featurize(config: FeaturizeConfig, fan_out: FanOut, log: Callable[[str], None],
               input_label: str | None = None) -> dict:
    """The three passes, the vocabulary, the store load and the manifest; ``fan_out`` runs
    each pass's tasks (on Ray Data, or in this process)."""
    files = readers.list_input_files(config.input, config.format)
    catalogue = _read_catalogue(config)
    forget_ids = _forget_ids(config)
    buckets = config.num_buckets or _auto_buckets(files)
    layout = passes.Layout(config.output, os.path.join(config.output, WORK_DIR))
    sequence, profile = config.sequence, config.resolved_profile()
    history_limit = config.history_limit or sequence.max_seq_len
    timer = _Timer(log=log)
    _clean_output(config.output)
    log(f"[featurize] {len(files)} input file(s), {buckets} user buckets -> {config.output}")

    read = timer.run("read_validate", fan_out, passes.read_validate_bucket,
                     [{"path": f, "file_index": i} for i, f in enumerate(files)],
                     input_errors=True,
                     fmt=config.format, layout=layout, num_buckets=buckets,
                     config=config.resolved_validate(), batch_rows=config.batch_rows,
                     forget=F.value_set(forget_ids))
    if not _sum(read, "rows_kept"):
        shutil.rmtree(layout.work, ignore_errors=True)
        raise _no_valid_rows(read, config, input_label)
    reference_time = max((r["ts_max"] for r in read if r["ts_max"] is not None), default=0.0)
    bucket_items = [{"bucket": b} for b in range(buckets)]
    bucketed = timer.run("sequences_profiles", fan_out, passes.sequence_bucket, bucket_items,
                         layout=layout, sequence=sequence, profile=profile,
                         reference_time=reference_time,
                         history_limit=history_limit if config.store else None)
    vocab_sizes = timer.run("vocab", _build_vocab, layout, buckets, config, catalogue)
    catalogue_summary = vocab_sizes.pop("catalogue", None)
    encoded = timer.run("encode", fan_out, passes.encode_bucket, bucket_items, layout=layout)
    counts = check_counts(read, bucketed, encoded)
    search = timer.run("search_index", _build_search_index, layout, buckets, catalogue)
    store = (timer.run("store", _load_store, config.store, layout, buckets, history_limit)
             if config.store else None)
    if not config.keep_work:
        shutil.rmtree(layout.work, ignore_errors=True)
    manifest = {
        "schema_version": S.SCHEMA_VERSION, "artifacts_version": ARTIFACTS_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": input_label or os.path.abspath(config.input), "input_files": len(files),
        "format": config.format, **counts,
        "users_forgotten": len(forget_ids), "forget_list_version": F.forget_list_version(forget_ids),
        "rejected_by_reason": _reasons(read),
        "users": _sum(bucketed, "users"), "sessions": _sum(bucketed, "sessions"),
        "items": vocab_sizes["items"] - S.FIRST_ID_INDEX,
        "categories": vocab_sizes["categories"] - S.FIRST_ID_INDEX,
        "vocab_sizes": vocab_sizes, "split": sequence.split.describe(),
        "catalogue": catalogue_summary,
        "search": search,
        "cold_item_train_events_removed": sum(r.get("cold_removed", 0) for r in encoded),
        "max_seq_len": sequence.max_seq_len,
        "events_in_sequences": _sum(encoded, "events_in_sequences"),
        "time_range": [min((r["ts_min"] for r in read if r["ts_min"] is not None),
                           default=None), reference_time if counts["rows_kept"] else None],
        "num_buckets": buckets, "store": store,
        "config": {**dataclasses.asdict(config), **({"input": input_label} if input_label else {})},
        "stage_seconds": timer.seconds,
        "data_version": _data_version(files, dataclasses.replace(config, input=input_label) if input_label
                                      else config, by_content=input_label is not None,
                                      forget_version=F.forget_list_version(forget_ids),
                                      catalogue_version=(catalogue_summary or {}).get("version")),
    }
    with open(os.path.join(config.output, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, default=str)
    return manifest
