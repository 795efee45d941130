"""The profile/history store, on a real SQLite file (and a real redis-server when present).

Every test runs against each backend through ``open_store(url)``; processes in the
concurrency and crash tests are real OS processes opening the same URL.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from conftest import REPO_ROOT

from seqrec_ray.serve.local import free_port
from seqrec_ray.store import open_store
from seqrec_ray.store.base import StoredEvent
from seqrec_ray.store.sqlite_store import SQLiteStore


class RedisServer:
    """A real redis-server on a free loopback port, durable (AOF fsync on every write)."""

    def __init__(self, binary: str, workdir: Path):
        self.binary, self.workdir = binary, workdir
        self.port = free_port()  # released just before the server takes it
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=1).ping():
                    return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {self.proc.stderr.read()}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, no final AOF rewrite."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    # SEQREC_REDIS_SERVER names a binary outside PATH (e.g. one unpacked from a package).
    binary = os.environ.get("SEQREC_REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        pytest.skip("no redis-server binary on PATH (apt-get install redis-server) and "
                    "SEQREC_REDIS_SERVER not set: Redis backend not tested")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    server = request.getfixturevalue("redis_server")
    redis.Redis.from_url(server.url).flushdb()
    return server.url


def _event(user: str, item: str, ts: float, kind: str = "view", **extra) -> StoredEvent:
    return StoredEvent(user_id=user, item_id=item, event_type=kind, timestamp=ts, **extra)


def _items(history: list[StoredEvent]) -> list[str]:
    return [e.item_id for e in history]


def _python(code: str, *args: str) -> subprocess.Popen:
    """A real child process running ``code`` with the repo importable; stdout is a pipe."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


# ---------------------------------------------------------------- round trips


def test_profiles_round_trip_and_upsert(store_url):
    profile = {"user_id": "u1", "n_events": 3, "top_categories": ["c9", "c1"],
               "mean_price": None, "purchase_rate": 1 / 3, "tags": ["buyer"], "名": "用户画像"}
    with open_store(store_url) as store:
        assert store.put_profiles([profile, {"user_id": 2, "n_events": 1}]) == 2
        assert store.get_profile("u1") == profile
        assert store.get_profile("2") == {"user_id": 2, "n_events": 1}
        assert store.get_profile("nobody") is None
        store.put_profiles([{"user_id": "u1", "n_events": 4}])
        assert store.get_profile("u1") == {"user_id": "u1", "n_events": 4}
        stats = store.stats()
        assert (stats.users_with_profile, stats.users_with_history, stats.events) == (2, 0, 0)
        with pytest.raises(ValueError, match="user_id"):
            store.put_profiles([{"n_events": 1}])


def test_history_is_most_recent_oldest_first_with_ties_in_insertion_order(store_url):
    with open_store(store_url) as store:
        full = _event("u", "a", 10.0, "purchase", session_id="s1", category_id="c",
                      price=9.5, query="red shoes")
        assert store.append_events([full, _event("u", "b", 30.0), _event("u", "c", 20.0)]) == 3
        store.append_events([_event("u", "d", 20.0), _event("v", "x", 25.0)])
        store.append_events([_event("u", "e", 5.0)])  # arrives late: older than the rest
        assert _items(store.get_history("u", 10)) == ["e", "a", "c", "d", "b"]
        assert _items(store.get_history("u", 3)) == ["c", "d", "b"]
        assert _items(store.get_history("u", 1)) == ["b"]
        assert store.get_history("u", 0) == [] and store.get_history("nobody", 5) == []
        assert store.get_history("u", 5)[1] == full  # every field round-trips
        assert _items(store.get_history("v", 5)) == ["x"]
        assert store.append_events([]) == 0
        stats = store.stats()
        assert (stats.users_with_history, stats.events) == (2, 6)
        with pytest.raises(ValueError, match="user_id"):
            store.append_events([_event("", "a", 1.0)])


def test_acknowledged_appends_are_there_after_reopen(store_url):
    store = open_store(store_url)
    store.put_profiles([{"user_id": "u", "n_events": 2}])
    for i in range(20):
        store.append_events([_event("u", f"i{i}", float(i))])
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.get_history("u", 1)
    with open_store(store_url) as reopened:
        assert _items(reopened.get_history("u", 100)) == [f"i{i}" for i in range(20)]
        assert reopened.get_profile("u") == {"user_id": "u", "n_events": 2}


def test_bulk_load_replaces_loaded_users_and_keeps_the_most_recent(store_url):
    with open_store(store_url) as store:
        store.append_events([_event("keep", "k1", 1.0), _event("old", "stale", 99.0)])
        events = [_event("old", f"o{i}", float(i % 4)) for i in range(8)]
        events += [_event("new", "n1", 5.0), _event("new", "n2", 5.0)]
        loaded = store.bulk_load([{"user_id": "old"}, {"user_id": "new", "n": 2}],
                                 iter(events), history_limit=3)
        assert loaded == (2, 5)
        # o3 and o7 share time 3.0, o2/o6 share 2.0: ties keep the input order.
        assert _items(store.get_history("old", 10)) == ["o6", "o3", "o7"]
        assert _items(store.get_history("new", 10)) == ["n1", "n2"]
        assert _items(store.get_history("keep", 10)) == ["k1"]  # not in the load: untouched
        assert store.get_profile("new") == {"user_id": "new", "n": 2}
        store.bulk_load([], [_event("new", "n3", 1.0)], history_limit=3)
        assert _items(store.get_history("new", 10)) == ["n3"]  # a reload replaces
        ties = [_event("tie", "t1", 1.0), _event("tie", "t2", 1.0), _event("tie", "t0", 0.5)]
        assert store.bulk_load([], ties, history_limit=1) == (0, 1)
        assert _items(store.get_history("tie", 10)) == ["t2"]  # the later of the tied pair
        with pytest.raises(ValueError, match="history_limit"):
            store.bulk_load([], [], history_limit=0)


def test_max_history_trims_on_append(store_url):
    with open_store(f"{store_url}?max_history=4" if "://" in store_url
                    else f"sqlite://{store_url}?max_history=4") as store:
        for i in range(10):
            store.append_events([_event("u", f"i{i}", float(i)), _event("v", f"j{i}", 1.0)])
        assert _items(store.get_history("u", 100)) == ["i6", "i7", "i8", "i9"]
        assert _items(store.get_history("v", 100)) == ["j6", "j7", "j8", "j9"]
        assert store.stats().events == 8


# ---------------------------------------------------------------- forgetting a user


def test_forget_user_removes_only_that_user_and_is_recorded(store_url):
    with open_store(store_url) as store:
        store.put_profiles([{"user_id": "gone", "n_events": 3}, {"user_id": "stay", "n": 1}])
        store.append_events([_event("gone", "a", 1.0), _event("stay", "s", 2.0),
                             _event("gone", "b", 3.0, query="private words")])
        store.append_events([_event("gone", "c", 4.0)])
        before = time.time()
        assert store.forget_user("gone") == 3
        assert store.get_profile("gone") is None and store.get_history("gone", 100) == []
        assert store.get_profile("stay") == {"user_id": "stay", "n": 1}
        assert _items(store.get_history("stay", 100)) == ["s"]
        stats = store.stats()
        assert (stats.users_with_profile, stats.users_with_history, stats.events) == (1, 1, 1)
        ((user, at),) = store.forgotten_users()
        assert user == "gone" and before <= at <= time.time()
        assert store.forget_user("never-seen") == 0  # nothing to delete, still recorded
        assert store.forget_user("gone") == 0  # again: the latest time wins, listed once
        assert [u for u, _ in store.forgotten_users()] == ["never-seen", "gone"]
        times = [at for _, at in store.forgotten_users()]
        assert times == sorted(times) and times[-1] > at
    with open_store(store_url) as reopened:  # durable: survives reopening
        assert [u for u, _ in reopened.forgotten_users()] == ["never-seen", "gone"]
        assert reopened.get_history("gone", 100) == [] and reopened.get_profile("gone") is None
        # A forgotten id that comes back starts a fresh history.
        reopened.append_events([_event("gone", "new", 9.0)])
        assert _items(reopened.get_history("gone", 100)) == ["new"]
        assert reopened.stats().events == 2


def test_bulk_load_never_loads_a_forgotten_user(store_url):
    with open_store(store_url) as store:
        store.forget_user("gone")
        profiles = [{"user_id": "gone", "n": 1}, {"user_id": "kept", "n": 2},
                    {"user_id": "profile-only", "n": 0}]
        events = [_event("gone", "g1", 1.0), _event("kept", "k1", 1.0), _event("kept", "k2", 2.0)]
        assert store.bulk_load(profiles, events, history_limit=5) == (2, 2)
        assert store.get_profile("gone") is None and store.get_history("gone", 10) == []
        assert store.get_profile("profile-only") == {"user_id": "profile-only", "n": 0}
        assert _items(store.get_history("kept", 10)) == ["k1", "k2"]
        # Live events of the returning user are theirs; a bulk load leaves them alone.
        store.append_events([_event("gone", "fresh", 5.0)])
        store.bulk_load([{"user_id": "gone"}], [_event("gone", "g2", 6.0)], history_limit=5)
        assert _items(store.get_history("gone", 10)) == ["fresh"]
        assert store.get_profile("gone") is None
        assert store.stats().events == 3


def test_sqlite_forget_leaves_no_copy_in_the_files(tmp_path):
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:
        store.put_profiles([{"user_id": "gone", "secret": "old-profile-7f3a"}])
        store.put_profiles([{"user_id": "gone", "secret": "new-profile-7f3a"}])  # an update
        store.append_events([_event("gone", f"item-7f3a-{i}", float(i), query="query-7f3a")
                             for i in range(50)] + [_event("stay", "s", 1.0)])
        store.forget_user("gone")
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db"))
        assert b"7f3a" not in raw  # no profile version, event or index entry left behind
        assert _items(store.get_history("stay", 5)) == ["s"]


def test_store_pickles_by_config_and_threads_share_it(store_url):
    with open_store(store_url) as store:
        store.append_events([_event("u", "a", 1.0)])
        clone = pickle.loads(pickle.dumps(store))  # what Serve does to constructor args
        assert _items(clone.get_history("u", 5)) == ["a"]
        clone.close()
        seen, errors = [], []

        def read_and_write(i: int) -> None:
            try:
                store.append_events([_event("t", f"x{i}", float(i))])
                seen.append(len(store.get_history("t", 100)))
            except Exception as err:  # reported below; a thread cannot fail the test itself
                errors.append(err)

        threads = [threading.Thread(target=read_and_write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and sorted(seen)[-1] == 8
        assert sorted(_items(store.get_history("t", 100))) == sorted(f"x{i}" for i in range(8))


# ---------------------------------------------------------------- processes

READER = """
import json, sys, time
from seqrec_ray.store import open_store
url, target, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
store = open_store(url)
print("ready", flush=True)
reads, counts, errors = 0, [], []
while time.monotonic() < deadline:
    try:
        items = [e.item_id for e in store.get_history("w", 100000)]
    except Exception as err:
        errors.append(repr(err)); continue
    reads += 1
    if items != [str(i) for i in range(len(items))]:
        errors.append(f"not a committed prefix: {items[:5]}...{items[-5:]}")
    counts.append(len(items))
    if len(items) == target:
        break
print(json.dumps({"reads": reads, "first": counts[0] if counts else None,
                  "last": counts[-1] if counts else None, "errors": errors[:5],
                  "monotone": counts == sorted(counts)}), flush=True)
"""


def test_reader_processes_see_committed_prefixes_while_one_writer_appends(store_url):
    batches, batch = 150, 4
    target = batches * batch
    with open_store(store_url) as store:
        readers = [_python(READER, store_url, str(target), "30") for _ in range(3)]
        for proc in readers:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for b in range(batches):
            store.append_events([_event("w", str(b * batch + i), float(b * batch + i))
                                 for i in range(batch)])
        reports = []
        for proc in readers:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    for report in reports:
        assert report["errors"] == [] and report["monotone"], report
        assert report["last"] == target, report
    # At least one reader read while the writer was part-way: real concurrency happened.
    assert any(r["first"] < target for r in reports), reports


WRITER = """
import sys
from seqrec_ray.store import open_store
from seqrec_ray.store.base import StoredEvent
store, user = open_store(sys.argv[1]), sys.argv[2]
i = 0
while True:
    store.append_events([StoredEvent(user, str(i), "cart", float(i), price=1.0 * i)])
    print(i, flush=True)  # the acknowledgement: printed only after append_events returned
    i += 1
"""


def test_acknowledged_events_survive_a_sigkilled_writer(store_url, request):
    for user, kill_after in (("k1", 40), ("k2", 173)):
        writer = _python(WRITER, store_url, user)
        acked = -1
        while acked < kill_after:
            line = writer.stdout.readline()
            assert line, writer.stderr.read()
            acked = int(line)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL
        if store_url.startswith("redis"):  # the server holds the data: crash it too
            server = request.getfixturevalue("redis_server")
            server.kill()
            server.start()
        with open_store(store_url) as store:
            items = [int(i) for i in _items(store.get_history(user, 100000))]
        # Every acknowledged event is there, in order, once; the writer may have got
        # further than the acknowledgements read so far, never with a gap.
        assert len(items) >= acked + 1 and items == list(range(len(items)))
        assert store_url.startswith("redis") or _sqlite_intact(store_url)


def _sqlite_intact(path: str) -> bool:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


OPENER = """
import sys
from seqrec_ray.store import open_store
from seqrec_ray.store.base import StoredEvent
with open_store(sys.argv[1]) as store:
    for i in range(10):
        store.append_events([StoredEvent(sys.argv[2], str(i), "view", float(i))])
print("ok", flush=True)
"""


def test_processes_creating_the_same_new_file_at_once_all_succeed(tmp_path):
    path = str(tmp_path / "fresh.db")
    procs = [_python(OPENER, path, f"user{n}") for n in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.strip() == "ok", err
    with open_store(path) as store:
        stats = store.stats()
        assert (stats.users_with_history, stats.events) == (4, 40)
        assert _items(store.get_history("user3", 100)) == [str(i) for i in range(10)]


def test_sqlite_file_is_wal_and_fsyncs_every_commit(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    conn = store._connect()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    store.close()
    with pytest.raises(ValueError, match="max_history"):
        SQLiteStore(tmp_path / "s.db", max_history=0)


def test_open_store_urls(tmp_path):
    absolute = tmp_path / "a.db"
    for url in (f"sqlite://{absolute}", str(absolute), f"sqlite:///{absolute}"):
        with open_store(url) as store:
            assert isinstance(store, SQLiteStore)
            assert os.path.abspath(store.config.path) == str(absolute)
    with open_store(f"sqlite://{absolute}?max_history=7&busy_timeout_s=2.5") as store:
        assert (store.config.max_history, store.config.busy_timeout_s) == (7, 2.5)
    with pytest.raises(ValueError, match="'mongodb'.*sqlite, redis"):
        open_store("mongodb://localhost/db")
    with pytest.raises(ValueError, match="unknown store option.*colour"):
        open_store(f"sqlite://{absolute}?colour=red")
    with pytest.raises(ValueError, match="needs a file path"):
        open_store("sqlite://")


def test_redis_url_opens_a_durable_redis_store(redis_server):
    from seqrec_ray.store.redis_store import RedisStore

    redis.Redis.from_url(redis_server.url).flushdb()
    with open_store(f"{redis_server.url}?max_history=2") as store:
        assert isinstance(store, RedisStore) and store.config.max_history == 2
        assert store.stats().extra["durable"] is True
