"""The live item catalogue in the store, on a real SQLite file and a real redis-server.

Every test runs against each backend through ``open_store(url)``; the processes in the
durability and concurrency tests are real OS processes opening the same URL.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
import redis

# One durable redis-server per session, started and skipped exactly as test_store.py does.
from test_store import _python, redis_server  # noqa: F401 (a fixture, asked for by name)

from seqrec_ray.store import open_store
from seqrec_ray.store.base import ItemUpdate, StoredEvent
from seqrec_ray.store.redis_store import RedisStore
from seqrec_ray.store.sqlite_store import SQLiteStore


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    server = request.getfixturevalue("redis_server")
    redis.Redis.from_url(server.url).flushdb()
    return server.url


def _row(item_id, **fields) -> dict:
    return {"item_id": item_id, "title": f"title {item_id}", "category_id": "c1", "brand": "b",
            "price": 9.5, "attributes": ["red"], **fields}


def _state(updates: list[ItemUpdate]) -> dict[str, tuple[int, dict | None]]:
    return {u.item_id: (u.seq, u.item) for u in updates}


# ---------------------------------------------------------------- writes and reads


def test_put_items_come_back_in_seq_order(store_url):
    with open_store(store_url) as store:
        assert store.item_updates() == [] and store.latest_item_seq() == 0
        assert store.stats().extra["items"] == 0
        before = time.time()
        rows = [_row("a"), _row(7, attributes=[], 名="商品"), _row("c", price=None)]
        assert store.put_items(rows) == 3
        updates = store.item_updates()
        assert [(u.seq, u.item_id) for u in updates] == [(1, "a"), (2, "7"), (3, "c")]
        assert updates[0].item == rows[0]
        assert updates[1].item == dict(rows[1], item_id="7")  # the id is a str in the row too
        assert updates[2].item["price"] is None
        assert all(before <= u.updated_at <= time.time() for u in updates)
        assert len({u.updated_at for u in updates}) == 1  # one call, one write
        assert store.latest_item_seq() == 3 and store.stats().extra["items"] == 3
        assert store.put_items([]) == 0 and store.latest_item_seq() == 3  # no seq taken


def test_an_update_moves_the_item_to_a_new_seq_and_a_delete_leaves_none(store_url):
    with open_store(store_url) as store:
        store.put_items([_row("a"), _row("b"), _row("c")])
        store.put_items([_row("a", price=1.0)])
        assert [(u.seq, u.item_id) for u in store.item_updates()] == [(2, "b"), (3, "c"), (4, "a")]
        assert store.item_updates()[-1].item["price"] == 1.0  # once, with its newest row
        assert store.delete_items(["b"]) == 1
        deleted = store.item_updates()[-1]
        assert (deleted.seq, deleted.item_id, deleted.item) == (5, "b", None)
        assert store.delete_items(["never-posted"]) == 1  # a trained item can be discontinued
        assert store.item_updates(after_seq=5)[0].item_id == "never-posted"
        assert store.stats().extra["items"] == 2 and store.latest_item_seq() == 6
        store.put_items([_row("b", title="back")])  # a deleted id may return
        assert _state(store.item_updates())["b"] == (7, _row("b", title="back"))
        assert store.stats().extra["items"] == 3
        # Repeats in one call: the last row wins, at the place of its last occurrence, and
        # the call's seqs stay consecutive.
        assert store.put_items([_row("x", title="first"), _row("y"), _row("x", title="last")]) == 2
        assert [(u.seq, u.item_id, u.item["title"]) for u in store.item_updates(after_seq=7)] == [
            (8, "y", "title y"), (9, "x", "last")]
        assert store.delete_items(["z", "y", "z"]) == 2
        assert [(u.seq, u.item_id, u.item) for u in store.item_updates(after_seq=9)] == [
            (10, "y", None), (11, "z", None)]
        assert store.latest_item_seq() == 11 and store.stats().extra["items"] == 4  # a, c, b, x


def test_polling_after_a_seq_returns_only_newer_writes_and_limit_pages(store_url):
    with open_store(store_url) as store:
        store.put_items([_row(f"i{n}") for n in range(5)])
        replica = _state(store.item_updates())
        last = store.latest_item_seq()
        assert store.item_updates(after_seq=last) == []
        store.put_items([_row("i1", price=2.0), _row("new")])
        store.delete_items(["i3"])
        news = store.item_updates(after_seq=last)
        assert [(u.seq, u.item_id) for u in news] == [(6, "i1"), (7, "new"), (8, "i3")]
        replica.update(_state(news))
        assert replica == _state(store.item_updates())  # polled == replayed from 0
        pages, after = [], 0
        while page := store.item_updates(after_seq=after, limit=2):
            assert len(page) <= 2
            pages += page
            after = page[-1].seq
        assert pages == store.item_updates()
        assert store.item_updates(limit=0) == []
        with pytest.raises(ValueError, match="limit"):
            store.item_updates(limit=-1)


def test_bad_rows_are_refused_before_anything_is_written(store_url):
    with open_store(store_url) as store:
        store.put_items([_row("ok")])
        with pytest.raises(ValueError, match=r"catalogue row 1 needs an item_id; got keys \['price', 'title'\]"):
            store.put_items([_row("fine"), {"title": "no id", "price": 1.0}])
        with pytest.raises(ValueError, match="row 0 needs an item_id"):
            store.put_items([_row(None)])
        with pytest.raises(ValueError, match="row 0 needs an item_id"):
            store.put_items(["not-a-dict"])
        with pytest.raises(ValueError, match="item id 1 is empty"):
            store.delete_items(["ok", ""])
        with pytest.raises(TypeError, match="not one str"):
            store.delete_items("ok")
        with pytest.raises(TypeError, match="JSON-able"):
            store.put_items([_row("obj", attributes=object())])
        assert [u.item_id for u in store.item_updates()] == ["ok"]
        assert store.latest_item_seq() == 1


# ---------------------------------------------------------------- durability and processes

CHILD = """
import json, sys
from seqrec_ray.store import open_store
with open_store(sys.argv[1]) as store:
    seen = [u.item_id for u in store.item_updates()]
    store.put_items([{"item_id": "from-child", "price": 3.0}])
    store.delete_items(["p1"])
    print(json.dumps({"seen": seen, "latest": store.latest_item_seq()}), flush=True)
"""


def test_writes_survive_reopening_and_other_processes_see_them(store_url):
    store = open_store(store_url)
    store.put_items([_row("p1"), _row("p2")])
    with open_store(store_url) as other:  # a second store object, open at the same time
        assert _state(other.item_updates()) == _state(store.item_updates())
    store.close()
    child = _python(CHILD, store_url)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert json.loads(out) == {"seen": ["p1", "p2"], "latest": 4}
    with open_store(store_url) as reopened:
        assert [(u.seq, u.item_id, u.item) for u in reopened.item_updates()] == [
            (2, "p2", _row("p2")), (3, "from-child", {"item_id": "from-child", "price": 3.0}),
            (4, "p1", None)]
        assert reopened.latest_item_seq() == 4 and reopened.stats().extra["items"] == 2


WRITER = """
import os, sys, time
from seqrec_ray.store import open_store
url, writer, go = sys.argv[1], sys.argv[2], sys.argv[3]
with open_store(url) as store:
    while not os.path.exists(go):
        time.sleep(0.001)
    deadline, batch = time.monotonic() + 1.0, 0
    while time.monotonic() < deadline and batch < 300:
        rows = [{"item_id": f"{writer}-{batch}-{j}"} for j in range(3)]
        store.put_items(rows + [{"item_id": "shared", "writer": writer, "batch": batch}])
        batch += 1
        time.sleep(0.002)  # SQLite's lock is not fair: a writer in a tight loop starves the other
print(batch, flush=True)
"""


def test_concurrent_writer_processes_get_unique_increasing_seqs(store_url, tmp_path):
    go = tmp_path / "go"
    writers = [_python(WRITER, store_url, w, str(go)) for w in ("w0", "w1")]
    with open_store(store_url) as store:
        replica, last, polls = {}, 0, 0
        go.touch()
        while any(w.poll() is None for w in writers) or polls == 0 or store.latest_item_seq() > last:
            news = store.item_updates(after_seq=last)
            seqs = [u.seq for u in news]
            assert seqs == sorted(set(seqs)) and all(s > last for s in seqs)
            replica.update(_state(news))
            last, polls = (seqs[-1] if seqs else last), polls + 1
            time.sleep(0.01)
        batches = []
        for w in writers:
            out, err = w.communicate(timeout=60)
            assert w.returncode == 0, err
            batches.append(int(out))
        full = store.item_updates()
        assert replica == _state(full)  # a replica that polled along holds the replayed state
        assert store.latest_item_seq() == 4 * sum(batches)  # every row took one seq, none twice
        assert len(full) == 3 * sum(batches) + 1
        seq = {u.item_id: u.seq for u in full}
        for w, n in zip(("w0", "w1"), batches):
            firsts = [seq[f"{w}-{b}-0"] for b in range(n)]
            assert firsts == sorted(firsts)  # one writer's calls keep their order
            # One call's rows got consecutive seqs, even with another process writing.
            assert all(seq[f"{w}-{b}-{j}"] == seq[f"{w}-{b}-0"] + j for b in range(n) for j in range(3))
        shared = next(u for u in full if u.item_id == "shared")
        assert shared.seq == seq[f"{shared.item['writer']}-{shared.item['batch']}-0"] + 3
    owners = [u.item_id[:2] for u in sorted(full, key=lambda u: u.seq) if u.item_id != "shared"]
    switches = sum(a != b for a, b in zip(owners, owners[1:]))
    assert switches >= 2, f"the writers never interleaved ({batches} batches): no concurrency tested"


# ---------------------------------------------------------------- backend specifics


def test_an_existing_store_file_without_the_items_table_gains_it(tmp_path):
    path = tmp_path / "old.db"
    with SQLiteStore(path) as store:
        store.append_events([StoredEvent("u", "a", "view", 1.0)])
    conn = sqlite3.connect(path)  # back to the file the code before the catalogue made
    conn.execute("DROP TABLE items")
    conn.execute("DELETE FROM meta WHERE key = 'item_seq'")
    conn.commit()
    conn.close()
    with SQLiteStore(path) as store:
        assert store.latest_item_seq() == 0 and store.item_updates() == []
        store.put_items([_row("a")])
        assert [u.seq for u in store.item_updates()] == [1]
        assert [e.item_id for e in store.get_history("u", 5)] == ["a"]


def test_redis_catalogue_keys_live_under_the_store_prefix(request):
    url = request.getfixturevalue("redis_server").url
    redis.Redis.from_url(url).flushdb()
    with RedisStore(url, prefix="shop1") as one, RedisStore(url, prefix="shop2") as two:
        one.put_items([_row("a")])
        one.delete_items(["b"])
        assert two.item_updates() == [] and two.latest_item_seq() == 0
        keys = set(redis.Redis.from_url(url, decode_responses=True).keys("*"))
        assert keys == {"shop1:item_seq", "shop1:item_log", "shop1:items", "shop1:items_live"}
