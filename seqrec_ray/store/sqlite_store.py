"""The embedded profile and history store: one SQLite file in WAL mode.

Why these settings:

- WAL lets many reader processes (Serve replicas) read while one writer appends; readers
  never block the writer and see only committed transactions.
- ``synchronous=FULL`` fsyncs the WAL at every commit, so an acknowledged append survives
  a killed process and a power loss alike.
- ``secure_delete=ON`` zeroes every deleted or overwritten row (an old profile version, a
  trimmed event), so a forgotten user's data does not linger in free space of the file;
  ``forget_user`` also truncates the WAL afterwards (best effort: a reader still on an
  older snapshot keeps its frames until the next checkpoint). Measured on the 2-core box:
  appends trimmed to 50 events ran at about 3k/s with it on or off (fsync dominates).
- Writes start with ``BEGIN IMMEDIATE``: the write lock is taken up front, so concurrent
  writers queue on the busy timeout instead of failing a read-to-write lock upgrade.
- One connection per thread and per process (sqlite3 connections must not cross either);
  a pickled store carries only its config and reconnects where it is unpickled.
- Catalogue items take their seqs from a counter in ``meta`` read and bumped inside the
  write's ``BEGIN IMMEDIATE`` transaction: the write lock orders writers from every
  process, so seqs are unique, and a reader's snapshot holding seq N holds every seq below.
  A counter rather than ``max(seq) + 1``, so a seq is never handed out twice even if old
  deletions are ever purged from the table.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from seqrec_ray.store.base import ItemUpdate, ProfileStore, StoredEvent, StoreStats

# Still 1 with the items table: the change is additive. New code opening an older file
# creates the table (CREATE ... IF NOT EXISTS below); older code opening a newer file never
# reads it. A bump would make older code refuse such files for no gain.
STORE_SCHEMA_VERSION = 1

_EVENT_COLUMNS = ("user_id", "item_id", "event_type", "timestamp", "session_id",
                  "category_id", "price", "query")

# Statements run one by one: executescript() would commit the surrounding transaction.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS profiles (user_id TEXT PRIMARY KEY, profile TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL, item_id TEXT NOT NULL, event_type TEXT NOT NULL,
        timestamp REAL NOT NULL, session_id TEXT, category_id TEXT, price REAL, query TEXT)""",
    # An index entry ends with the rowid (seq), so this serves ORDER BY timestamp, seq.
    "CREATE INDEX IF NOT EXISTS history_by_user_time ON history (user_id, timestamp)",
    # Deletions (forget_user): one row per forgotten user, the latest time it was forgotten.
    """CREATE TABLE IF NOT EXISTS forgotten_users (
        user_id TEXT PRIMARY KEY, forgotten_at REAL NOT NULL)""",
    # The live catalogue: one row per item, its latest state (item NULL = deleted) and the
    # seq of that write; meta's item_seq is the last seq handed out.
    """CREATE TABLE IF NOT EXISTS items (
        item_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, item TEXT, updated_at REAL NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS items_by_seq ON items (seq)",
    f"INSERT OR IGNORE INTO meta VALUES ('store_schema_version', '{STORE_SCHEMA_VERSION}')",
    "INSERT OR IGNORE INTO meta VALUES ('item_seq', '0')",
)


@dataclass(frozen=True)
class SQLiteStoreConfig:
    path: str
    busy_timeout_s: float = 30.0
    # Appends trim each touched user's history to this many most recent events; None keeps all.
    max_history: int | None = None

    def __post_init__(self) -> None:
        if not self.path or self.path == ":memory:":
            raise ValueError(f"path must name a file (shared between processes), got {self.path!r}")
        if not self.busy_timeout_s > 0:
            raise ValueError(f"busy_timeout_s must be > 0, got {self.busy_timeout_s}")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError(f"max_history must be >= 1 or None, got {self.max_history}")


class SQLiteStore(ProfileStore):
    """ProfileStore in one SQLite file; safe for many reader processes and one writer."""

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 30.0,
                 max_history: int | None = None):
        self.config = SQLiteStoreConfig(os.fspath(path), busy_timeout_s, max_history)
        self._local = threading.local()
        self._closed = False
        self._connections: list[tuple[int, sqlite3.Connection]] = []  # (pid, connection)
        self._lock = threading.Lock()
        self._initialise()

    # -------------------------------------------------------------- connections

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        config = state["config"]
        self.__init__(config.path, config.busy_timeout_s, config.max_history)

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection in this process (a forked child opens its own)."""
        if self._closed:
            raise RuntimeError(f"store {self.config.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE.
        # check_same_thread=False only so close() may close every thread's connection;
        # each connection is still used by the one thread that made it.
        conn = sqlite3.connect(self.config.path, timeout=self.config.busy_timeout_s,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self.config.busy_timeout_s * 1000)}")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append((os.getpid(), conn))
        return conn

    def _initialise(self) -> None:
        conn = self._connect()
        self._enable_wal(conn)
        with self._write(conn):
            for statement in _SCHEMA:
                conn.execute(statement)
        version = conn.execute(
            "SELECT value FROM meta WHERE key = 'store_schema_version'").fetchone()[0]
        if int(version) != STORE_SCHEMA_VERSION:
            raise ValueError(f"{self.config.path}: store schema version {version}, "
                             f"this code reads {STORE_SCHEMA_VERSION}")

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # WAL is a property of the file; switching needs a moment with no other writer, so
        # processes opening the same new file at once retry until one of them has done it.
        deadline = time.monotonic() + self.config.busy_timeout_s
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode == "wal":
                    return
                raise sqlite3.OperationalError(f"journal_mode stayed {mode!r}")
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction; committed (and fsynced) when the block ends."""
        conn = conn or self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:  # e.g. an I/O error: nothing of it was acknowledged
                conn.execute("ROLLBACK")
            raise

    # -------------------------------------------------------------- profiles

    def put_profiles(self, profiles: Iterable[dict[str, Any]]) -> int:
        rows = [_profile_row(p) for p in profiles]
        with self._write() as conn:
            return _upsert_profiles(conn, rows)

    def get_profile(self, user_id: str) -> dict[str, Any] | None:
        row = self._connect().execute(
            "SELECT profile FROM profiles WHERE user_id = ?", (str(user_id),)).fetchone()
        return None if row is None else json.loads(row[0])

    # -------------------------------------------------------------- history

    def append_events(self, events: Sequence[StoredEvent]) -> int:
        rows = [_event_row(e) for e in events]
        if not rows:
            return 0
        with self._write() as conn:
            conn.executemany(_INSERT_EVENT, rows)
            if self.config.max_history is not None:
                users = sorted({row[0] for row in rows})
                conn.executemany(_TRIM_USER, [(u, u, self.config.max_history) for u in users])
        return len(rows)

    def get_history(self, user_id: str, limit: int) -> list[StoredEvent]:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        rows = self._connect().execute(
            f"SELECT {', '.join(_EVENT_COLUMNS)} FROM history WHERE user_id = ? "
            "ORDER BY timestamp DESC, seq DESC LIMIT ?", (str(user_id), limit)).fetchall()
        return [StoredEvent(*row) for row in reversed(rows)]

    def bulk_load(self, profiles: Iterable[dict[str, Any]], events: Iterable[StoredEvent],
                  history_limit: int) -> tuple[int, int]:
        """Load featurize output in one transaction: upsert profiles, and replace the
        history of every user in ``events`` by their ``history_limit`` most recent events.

        Users absent from ``events`` keep their history; forgotten users (``forgotten_users``)
        are skipped, profile and events alike. Returns (profiles, events kept).
        """
        if history_limit < 1:
            raise ValueError(f"history_limit must be >= 1, got {history_limit}")
        recent = most_recent_per_user(events, history_limit)
        with self._write() as conn:
            # Read inside the write transaction: no forget_user can slip in between.
            forgotten = {u for (u,) in conn.execute("SELECT user_id FROM forgotten_users")}
            rows = (r for r in (_profile_row(p) for p in profiles) if r[0] not in forgotten)
            n_profiles = _upsert_profiles(conn, rows)
            recent = {u: r for u, r in recent.items() if u not in forgotten}
            conn.executemany("DELETE FROM history WHERE user_id = ?", ((u,) for u in recent))
            rows = (row for user_rows in recent.values() for row in user_rows)
            kept = conn.executemany(_INSERT_EVENT, rows).rowcount
        return n_profiles, kept

    # -------------------------------------------------------------- deletion

    def forget_user(self, user_id: str) -> int:
        user = str(user_id)
        with self._write() as conn:
            removed = conn.execute("DELETE FROM history WHERE user_id = ?", (user,)).rowcount
            conn.execute("DELETE FROM profiles WHERE user_id = ?", (user,))
            conn.execute("INSERT INTO forgotten_users (user_id, forgotten_at) VALUES (?, ?) "
                         "ON CONFLICT (user_id) DO UPDATE SET forgotten_at = excluded.forgotten_at",
                         (user, time.time()))
        self._truncate_wal(conn)
        return removed

    def _truncate_wal(self, conn: sqlite3.Connection) -> None:
        """Checkpoint and empty the WAL, whose old frames still hold deleted rows. Best
        effort, waiting at most a second for readers (a Serve replica must not stall)."""
        conn.execute("PRAGMA busy_timeout=1000")
        try:  # the deletion is committed already: a busy checkpoint must not fail it
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.config.busy_timeout_s * 1000)}")

    def forgotten_users(self) -> list[tuple[str, float]]:
        rows = self._connect().execute(
            "SELECT user_id, forgotten_at FROM forgotten_users ORDER BY forgotten_at, rowid")
        return [(user, float(at)) for user, at in rows]

    # -------------------------------------------------------------- catalogue

    def put_items(self, items: Sequence[dict[str, Any]]) -> int:
        return self._write_items(_item_rows(items))

    def delete_items(self, item_ids: Sequence[str]) -> int:
        return self._write_items([(item_id, None) for item_id in _item_ids(item_ids)])

    def _write_items(self, rows: list[tuple[str, str | None]]) -> int:
        """Write (item_id, item JSON or None) rows with the next seqs, in one transaction."""
        if not rows:
            return 0
        now = time.time()
        with self._write() as conn:
            last = int(conn.execute(_ITEM_SEQ).fetchone()[0])
            conn.executemany(_UPSERT_ITEM, [(item_id, last + i, body, now)
                                            for i, (item_id, body) in enumerate(rows, 1)])
            conn.execute("UPDATE meta SET value = ? WHERE key = 'item_seq'", (str(last + len(rows)),))
        return len(rows)

    def item_updates(self, after_seq: int = 0, limit: int | None = None) -> list[ItemUpdate]:
        _check_limit(limit)
        rows = self._connect().execute(
            "SELECT seq, item_id, item, updated_at FROM items WHERE seq > ? ORDER BY seq LIMIT ?",
            (int(after_seq), -1 if limit is None else limit))
        return [ItemUpdate(seq, item_id, None if item is None else json.loads(item), at)
                for seq, item_id, item, at in rows]

    def latest_item_seq(self) -> int:
        return int(self._connect().execute(_ITEM_SEQ).fetchone()[0])

    # -------------------------------------------------------------- housekeeping

    def stats(self) -> StoreStats:
        conn = self._connect()
        profiles = conn.execute("SELECT COUNT(*) FROM profiles").fetchone()[0]
        users, events = conn.execute(
            "SELECT COUNT(DISTINCT user_id), COUNT(*) FROM history").fetchone()
        items = conn.execute("SELECT COUNT(*) FROM items WHERE item IS NOT NULL").fetchone()[0]
        return StoreStats(profiles, users, events,
                          {"backend": "sqlite", "path": self.config.path, "items": items})

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for pid, conn in connections:
            if pid == os.getpid():  # a connection inherited through fork is not ours to close
                conn.close()


_INSERT_EVENT = (f"INSERT INTO history ({', '.join(_EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})")
_TRIM_USER = ("DELETE FROM history WHERE user_id = ? AND seq IN (SELECT seq FROM history "
              "WHERE user_id = ? ORDER BY timestamp DESC, seq DESC LIMIT -1 OFFSET ?)")
_ITEM_SEQ = "SELECT value FROM meta WHERE key = 'item_seq'"
_UPSERT_ITEM = ("INSERT INTO items (item_id, seq, item, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (item_id) DO UPDATE SET seq = excluded.seq, item = excluded.item, "
                "updated_at = excluded.updated_at")


def most_recent_per_user(events: Iterable[StoredEvent], limit: int) -> dict[str, list[tuple]]:
    """Each user's ``limit`` most recent events as store rows, oldest first.

    Ties in time keep the input order. Memory stays within about 2 * limit rows per user
    however long the input is: a user's list is trimmed whenever it doubles.
    """
    kept: dict[str, list[tuple[float, int, tuple]]] = {}
    for position, event in enumerate(events):
        row = _event_row(event)
        rows = kept.setdefault(row[0], [])
        rows.append((row[3], position, row))
        if len(rows) >= 2 * limit:
            rows.sort(key=lambda r: r[:2])
            del rows[:-limit]
    out = {}
    for user, rows in kept.items():
        rows.sort(key=lambda r: r[:2])
        out[user] = [row for _, _, row in rows[-limit:]]
    return out


def _upsert_profiles(conn: sqlite3.Connection, rows: Iterable[tuple[str, str]]) -> int:
    return conn.executemany(
        "INSERT INTO profiles (user_id, profile) VALUES (?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET profile = excluded.profile", rows).rowcount


def _profile_row(profile: dict[str, Any]) -> tuple[str, str]:
    if "user_id" not in profile or profile["user_id"] is None:
        raise ValueError(f"a profile needs a user_id; got keys {sorted(profile)}")
    return str(profile["user_id"]), json.dumps(profile, default=_json_default)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays arrive from pyarrow/pandas conversions.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"value {value!r} of type {type(value).__name__} is not JSON-able")


def _item_rows(items: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Validated (item_id, row JSON) pairs, one per id: the last row of a repeated id, at
    the place of its last occurrence. The row keeps every field, its item_id as a str."""
    rows = []
    for position, item in enumerate(items):
        if not isinstance(item, Mapping) or item.get("item_id") in (None, ""):
            got = f"keys {sorted(map(str, item))}" if isinstance(item, Mapping) else repr(item)
            raise ValueError(f"catalogue row {position} needs an item_id; got {got}")
        item_id = str(item["item_id"])
        rows.append((item_id, json.dumps({**item, "item_id": item_id}, default=_json_default)))
    return _last_of_each(rows)


def _item_ids(item_ids: Iterable[Any]) -> list[str]:
    """Validated ids as str, each once (at the place of its last occurrence)."""
    if isinstance(item_ids, str):
        raise TypeError(f"item_ids must be a sequence of ids, not one str {item_ids!r}")
    ids = []
    for position, item_id in enumerate(item_ids):
        if item_id is None or item_id == "":
            raise ValueError(f"item id {position} is empty: {item_id!r}")
        ids.append((str(item_id), None))
    return [item_id for item_id, _ in _last_of_each(ids)]


def _last_of_each(pairs: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    last: dict[str, Any] = {}
    for key, value in pairs:
        last.pop(key, None)  # re-inserted: the key moves to its latest place
        last[key] = value
    return list(last.items())


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")


def _event_row(event: StoredEvent) -> tuple:
    if not event.user_id or not event.item_id or not event.event_type:
        raise ValueError(f"an event needs user_id, item_id and event_type; got {event}")
    return (str(event.user_id), str(event.item_id), event.event_type, float(event.timestamp),
            event.session_id, event.category_id,
            None if event.price is None else float(event.price), event.query)
