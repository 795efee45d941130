"""Forgetting users in data: the deletion list, the row filter featurize applies, and the
rewrite of an existing artifacts directory (``jobs/forget.py``). Pure pyarrow, no Ray.

A deletion list is a set of raw user ids. Featurize leaves every row of those users out
of every artifact (``drop_users`` in its first pass); ``forget_in_artifacts`` removes them
from a directory written earlier. Both record the list's ``forget_list_version`` (a short
hash of the sorted ids, never the ids themselves) and its size in the manifest, so a
checkpoint trained on the artifacts names the list it was trained after.

The vocabulary is left as it is by ``forget_in_artifacts``: item indices must keep meaning
the same items for checkpoints already trained on the directory. Item ids are not user
data; their counts still include the forgotten users' events until the next featurize.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqrec_ray import schema as S
from seqrec_ray.data.artifacts import MANIFEST, load_manifest

STAGING_DIR = "_forget_staging"  # new parts are written here, then moved over the old ones
CHANGES = "changes.json"  # in STAGING_DIR: the committed change set (paths only, never ids)
REJECT_REASON = "reason"


# ---------------------------------------------------------------- the deletion list


def read_user_ids(path: str) -> frozenset[str]:
    """A file of user ids, one per line (surrounding whitespace and blank lines ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            return frozenset(line.strip() for line in f if line.strip())
    except FileNotFoundError:
        raise FileNotFoundError(f"deletion list {path!r} does not exist") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"deletion list {path!r} is not UTF-8 text ({err})") from None


def forget_list_version(user_ids: Iterable[str]) -> str | None:
    """A short hash of the sorted id set (the same set, the same version); None when empty."""
    ids = sorted(set(user_ids))
    if not ids:
        return None
    digest = hashlib.sha256()
    for user in ids:
        digest.update(user.encode("utf-8") + b"\n")
    return digest.hexdigest()[:12]


def value_set(user_ids: Iterable[str]) -> pa.Array | None:
    """The ids as the array ``drop_users`` takes (sorted, so it is the same in every task)."""
    ids = sorted(set(user_ids))
    return pa.array(ids, pa.string()) if ids else None


def drop_users(table: pa.Table, forget: pa.Array | None,
               column: str = S.USER_ID) -> tuple[pa.Table, int]:
    """``table`` without the rows whose ``column`` is in ``forget``; (rows left, rows dropped).

    A null id never matches. ``forget`` None (an empty list) returns the table unchanged.
    """
    if forget is None or table.num_rows == 0 or column not in table.column_names:
        return table, 0
    ids = table[column]
    if not pa.types.is_string(ids.type):
        ids = pc.cast(ids, pa.string())
    hit = pc.fill_null(pc.is_in(ids, value_set=forget), False)
    dropped = int(pc.sum(hit).as_py() or 0)
    return (table.filter(pc.invert(hit)), dropped) if dropped else (table, 0)


# ---------------------------------------------------------------- an artifacts directory


@dataclass
class _Outcome:
    """What came out of one directory's parts (and the time range left), for the manifest."""

    users: int = 0  # profile rows
    rows_kept: int = 0  # their events (profiles' n_events: kept rows after deduplication)
    sessions: int = 0
    events_in_sequences: int = 0
    rejects: dict[str, int] = field(default_factory=dict)  # reason -> rows
    rows_by_part: dict[str, int] = field(default_factory=dict)  # "sequences" -> rows removed
    time_range: list = field(default_factory=lambda: [None, None])  # of the profiles left

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects.values())


def _parquet_files(directory: str) -> list[str]:
    """Every Parquet file under the directory (relative paths), the staging area aside."""
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != STAGING_DIR)
        out += [os.path.relpath(os.path.join(root, f), directory)
                for f in sorted(files) if f.endswith(".parquet")]
    return out


def _account(removed: _Outcome, part: str, gone: pa.Table) -> None:
    removed.rows_by_part[part] = removed.rows_by_part.get(part, 0) + gone.num_rows
    if part == "profiles":
        removed.users += gone.num_rows
        removed.rows_kept += int(pc.sum(gone["n_events"]).as_py() or 0)
        removed.sessions += int(pc.sum(gone["n_sessions"]).as_py() or 0)
    elif part == "sequences":
        removed.events_in_sequences += int(pc.sum(pc.list_value_length(gone["items"])).as_py() or 0)
    elif part == "rejects":
        for reason in gone[REJECT_REASON].to_pylist():
            removed.rejects[reason] = removed.rejects.get(reason, 0) + 1


def _widen(time_range: list, profiles: pa.Table) -> None:
    if profiles.num_rows:
        low, high = pc.min(profiles["first_seen"]).as_py(), pc.max(profiles["last_seen"]).as_py()
        time_range[0] = low if time_range[0] is None else min(time_range[0], low)
        time_range[1] = high if time_range[1] is None else max(time_range[1], high)


def _stage(directory: str, forget: pa.Array) -> tuple[list[tuple[str, str | None]], _Outcome]:
    """Write each changed Parquet file without the users into the staging area.

    Returns (relative path, staged copy or None = the file is left empty, so removed) per
    changed file, and what was removed. Every file with a ``user_id`` column is filtered,
    so intermediate files (``_work/``, kept by ``--keep-work``) lose the users too.
    """
    staging = os.path.join(directory, STAGING_DIR)
    changes, removed = [], _Outcome()
    for rel in _parquet_files(directory):
        path = os.path.join(directory, rel)
        if S.USER_ID not in pq.read_schema(path).names:
            continue
        table = pq.read_table(path)
        hit = pc.fill_null(pc.is_in(table[S.USER_ID], value_set=forget), False)
        kept = table.filter(pc.invert(hit))
        if rel.split(os.sep)[0] == "profiles":
            _widen(removed.time_range, kept)
        if not pc.any(hit).as_py():
            continue
        _account(removed, rel.split(os.sep)[0], table.filter(hit))
        if kept.num_rows == 0:
            changes.append((rel, None))
            continue
        staged = os.path.join(staging, rel)
        os.makedirs(os.path.dirname(staged), exist_ok=True)
        pq.write_table(kept, staged)
        changes.append((rel, staged))
    return changes, removed


def _commit(directory: str, changes: list[tuple[str, str | None]], manifest: dict) -> None:
    """Record the staged change set (the commit point), then apply it."""
    staging = os.path.join(directory, STAGING_DIR)
    os.makedirs(staging, exist_ok=True)
    _write_json(os.path.join(staging, MANIFEST), manifest)
    _write_json(os.path.join(staging, CHANGES), [[rel, staged] for rel, staged in changes])
    _finish(directory)


def _finish(directory: str) -> None:
    """Apply a committed change set, if one is staged (again after an interruption: each
    step is an atomic rename or removal that is skipped once done), then drop the staging."""
    staging = os.path.join(directory, STAGING_DIR)
    changes = os.path.join(staging, CHANGES)
    if os.path.isfile(changes):
        with open(changes, encoding="utf-8") as f:
            for rel, staged in json.load(f):
                target = os.path.join(directory, rel)
                if staged is None and os.path.exists(target):
                    os.remove(target)
                elif staged is not None and os.path.exists(staged):
                    os.replace(staged, target)
        if os.path.isfile(os.path.join(staging, MANIFEST)):
            os.replace(os.path.join(staging, MANIFEST), os.path.join(directory, MANIFEST))
    shutil.rmtree(staging, ignore_errors=True)


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def _updated_manifest(manifest: dict, removed: _Outcome, ids: frozenset[str]) -> dict:
    out = dict(manifest)
    out["rows_kept"] -= removed.rows_kept
    out["rows_rejected"] -= removed.rows_rejected
    reasons = dict(manifest.get("rejected_by_reason", {}))
    for reason, n in removed.rejects.items():
        reasons[reason] = reasons.get(reason, 0) - n
    out["rejected_by_reason"] = {r: n for r, n in sorted(reasons.items()) if n}
    out["rows_forgotten"] = (manifest.get("rows_forgotten", 0) + removed.rows_kept
                             + removed.rows_rejected)
    for key, n in (("users", removed.users), ("sessions", removed.sessions),
                   ("events_in_sequences", removed.events_in_sequences)):
        if key in out:
            out[key] -= n
    if removed.users and "time_range" in out:  # the forgotten may have been first or last
        out["time_range"] = removed.time_range
    version = forget_list_version(ids)
    out["forget_list_version"], out["users_forgotten"] = version, len(ids)
    if removed.rows_by_part or version != manifest.get("forget_list_version"):
        out["data_version"] = hashlib.sha256(
            f"{manifest.get('data_version')}\0forget\0{version}".encode()).hexdigest()[:12]
    return out


def check_manifest_counts(manifest: dict) -> None:
    """The manifest invariant ``rows_read == rows_kept + rows_rejected + rows_duplicate +
    rows_forgotten``; ValueError naming the numbers when it fails."""
    parts = [manifest[k] for k in ("rows_kept", "rows_rejected", "rows_duplicate")]
    parts.append(manifest.get("rows_forgotten", 0))
    if manifest["rows_read"] != sum(parts):
        raise ValueError(f"manifest counts do not reconcile: rows_read {manifest['rows_read']} "
                         f"!= rows_kept + rows_rejected + rows_duplicate + rows_forgotten "
                         f"({' + '.join(map(str, parts))})")


def forget_in_artifacts(directory: str, user_ids: Iterable[str]) -> dict:
    """Remove every row of ``user_ids`` from an artifacts directory; returns a summary.

    New parts and the new manifest are written to a staging folder first; writing its
    change list is the commit point; then each is moved over the old file (one atomic rename
    each). An interrupted run leaves every file either old or new: before a commit the
    staging is discarded, after it the next run (or any call here) finishes the moves.
    Running twice with the same ids changes nothing the second time.
    """
    ids = frozenset(user_ids)
    load_manifest(directory)  # an artifacts directory at all
    _finish(directory)  # an earlier run's committed changes, if it was interrupted
    manifest = load_manifest(directory)
    forget = value_set(ids)
    changes, removed = _stage(directory, forget) if forget is not None else ([], _Outcome())
    updated = _updated_manifest(manifest, removed, ids)
    check_manifest_counts(updated)
    if updated != manifest:
        _commit(directory, changes, updated)
    return {"artifacts": directory, "users_in_list": len(ids), "users_removed": removed.users,
            "rows_removed": dict(sorted(removed.rows_by_part.items())),
            "rows_forgotten": updated["rows_forgotten"],
            "forget_list_version": updated["forget_list_version"]}


# ---------------------------------------------------------------- the job


@dataclass(frozen=True)
class ForgetConfig:
    artifacts: str = field(metadata={"help": "featurize artifacts directory to remove the users from"})
    users: str | None = field(default=None, metadata={"help": "a file of user ids, one per line"})
    user_ids: tuple[str, ...] = ()  # --user ID, repeated (the job adds that flag itself)
    store: str | None = field(default=None, metadata={"help": (
        "also forget the users in this store (URL or SQLite path); its whole deletion list "
        "is then applied to the artifacts")})

    def __post_init__(self) -> None:
        if not self.artifacts:
            raise ValueError("artifacts directory must be given")
        if any(not u or u != u.strip() for u in self.user_ids):
            raise ValueError(f"user ids must be non-empty without surrounding spaces, got "
                             f"{[u for u in self.user_ids if not u or u != u.strip()]!r}")
        if self.users is None and not self.user_ids and self.store is None:
            raise ValueError("nothing to forget: give --users FILE, --user ID or --store URL")


def run_forget(config: ForgetConfig, log: Callable[[str], None] = print) -> dict:
    """Forget the users in the store (when given) and in the artifacts; returns a summary.

    The list applied to the artifacts is the given ids plus, with a store, every user the
    store has forgotten, so the recorded ``forget_list_version`` names the whole list.
    """
    load_manifest(config.artifacts)  # fail on a wrong directory before touching the store
    ids = set(config.user_ids)
    if config.users is not None:
        ids |= read_user_ids(config.users)
    summary: dict = {}
    if config.store is not None:
        from seqrec_ray.store import open_store

        start = time.perf_counter()
        with open_store(config.store) as store:
            ids_given = sorted(ids)
            events = sum(store.forget_user(u) for u in ids_given)
            ids |= {u for u, _ in store.forgotten_users()}
        summary["store"] = {"users_forgotten": len(ids_given), "events_removed": events,
                            "seconds": round(time.perf_counter() - start, 3)}
        log(f"[forget] store: {len(ids_given)} users forgotten, {events} events removed")
    summary.update(forget_in_artifacts(config.artifacts, ids))
    log(f"[forget] artifacts: {summary['users_removed']} users, rows removed "
        f"{summary['rows_removed']}")
    return summary
