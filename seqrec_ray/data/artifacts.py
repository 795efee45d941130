"""Load a featurize artifacts directory (docs/contracts.md §2) without Ray.

Later stages (training, evaluation, serving) need only these loaders and the directory;
the vocabulary's loader is ``seqrec_ray.data.vocab.load_vocab``.
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from seqrec_ray import schema as S

ARTIFACTS_VERSION = 1
MANIFEST = "manifest.json"


def load_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory!r} is not a featurize artifacts directory "
                                f"(no {MANIFEST})")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("artifacts_version") != ARTIFACTS_VERSION:
        raise ValueError(f"{path}: artifacts_version {manifest.get('artifacts_version')!r}, "
                         f"this code reads version {ARTIFACTS_VERSION}")
    return manifest


def _read_parts(directory: str, kind: str, schema: pa.Schema | None = None) -> pa.Table:
    path = os.path.join(directory, kind)
    files = sorted(f for f in os.listdir(path) if f.endswith(".parquet")) if os.path.isdir(
        path) else []
    if not files:
        if schema is None:
            raise FileNotFoundError(f"no {kind} parts under {directory!r}")
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(os.path.join(path, f)) for f in files])


def load_sequences(directory: str) -> pa.Table:
    """All users' sequence rows (one row per user)."""
    from seqrec_ray.data.sequences import SEQUENCE_SCHEMA

    return _read_parts(directory, "sequences", SEQUENCE_SCHEMA)


def load_profiles(directory: str) -> pa.Table:
    from seqrec_ray.data.profiles import PROFILE_SCHEMA

    return _read_parts(directory, "profiles", PROFILE_SCHEMA)


def load_rejects(directory: str) -> pa.Table:
    """Rejected rows (reader columns + ``reason``); empty when nothing was rejected."""
    schema = S.READER_SCHEMA.append(pa.field("reason", pa.string()))
    return _read_parts(directory, "rejects", schema)
