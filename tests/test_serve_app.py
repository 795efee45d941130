"""The Serve app end to end: a trained checkpoint, a real SQLite store, real HTTP on loopback.

One app is started for the whole module (about 30 s on 2 cores) with an API key set, so
every request below also proves the key is accepted; one test sends none.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from conftest import shop_artifacts

from seqrec_ray.sim.demo_shop import DemoShop

APP_NAME = "seqrec-test"
API_KEY = "test-key-0123456789"
SHOP = DemoShop(users=60, categories=4, items_per_category=10, events_per_user=12)


def _train(artifacts, out, seed: int, epochs: int):
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    config = TrainConfig(model="lstm", dim=16, hidden=32, epochs=epochs, batch_size=16, lr=0.01, max_len=10,
                         patience=0, eval_batch_size=64, seed=seed, run_name=f"serve-test-{seed}", torch_threads=1)
    return run_in_process(config, artifacts, out, progress=False)["best_checkpoint"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Artifacts and a loaded store from featurize, two trained checkpoints (no Ray needed)."""
    root = tmp_path_factory.mktemp("serve")
    events = SHOP.events()
    artifacts, store_url = shop_artifacts(root, SHOP)
    return {
        "events": events,
        "artifacts": artifacts,
        "store": store_url,
        "ckpt": _train(artifacts, root / "run0", seed=0, epochs=10),
        "ckpt2": _train(artifacts, root / "run1", seed=1, epochs=2),
    }


@pytest.fixture(scope="module")
def app(serve_local, world):
    """The app on the session's local Serve; deleted afterwards."""
    from seqrec_ray.serve.app import build_app_graph
    from seqrec_ray.serve.config import ServeConfig

    config = ServeConfig(checkpoint=world["ckpt"], store=world["store"], api_key=API_KEY, max_k=50, max_items=100,
                         max_events=200, max_body_bytes=64 * 1024)
    url = serve_local.run(build_app_graph(config), APP_NAME)
    yield {"url": url, "config": config}
    serve_local.delete(APP_NAME)


@pytest.fixture
def client(app):
    with httpx.Client(base_url=app["url"], headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c


def _recommend(client, user, **kw):
    r = client.post("/recommend", json={"user_id": user, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def _history(world, user):
    return [e for e in world["events"] if e.user_id == user]


def test_recommendations_are_raw_ids_from_the_trained_vocab_with_reasons(client, world):
    body = _recommend(client, "user-5", k=5)
    assert body["cold_start"] is False and len(body["items"]) == 5
    catalogue = {e.item_id for e in world["events"]}
    seen = {e.item_id for e in _history(world, "user-5")}
    for item in body["items"]:
        assert item["item_id"] in catalogue  # raw ids, never an index, <pad> or <oov>
        assert item["reason"] and all(b["item_id"] in seen for b in item["because"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_purchased_items_never_come_back_unless_asked(client, world):
    everything = SHOP.categories * SHOP.items_per_category
    for user in ("user-0", "user-7", "user-13"):
        bought = {e.item_id for e in _history(world, user) if e.event_type == "purchase"}
        assert bought
        excluded = {i["item_id"] for i in _recommend(client, user, k=everything)["items"]}
        assert excluded and not excluded & bought
        assert len(excluded) == everything - len(bought)
        kept = {i["item_id"] for i in _recommend(client, user, k=everything, exclude_purchased=False)["items"]}
        assert bought <= kept


def test_category_filter_keeps_to_the_requested_categories(client):
    items = _recommend(client, "user-1", k=8, categories=["cat-2"])["items"]
    assert len(items) == 8 and all(i["item_id"].startswith("item-2-") for i in items)


def test_posted_events_change_the_next_recommendation(client, world):
    user = "user-1"
    current = _history(world, user)[-1].category_id
    target = next(c for c in range(SHOP.categories) if f"cat-{c}" != current)
    before = _recommend(client, user, k=5)
    now = time.time()
    events = [{"user_id": user, "item_id": f"item-{target}-{j}", "event_type": t, "timestamp": now + 60 * j}
              for j, t in enumerate(["view", "click", "view", "cart", "view", "click"])]
    r = client.post("/events", json=events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 6, "users": 1}
    after = _recommend(client, user, k=5)
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]
    # The trained model follows the user into the newly browsed category.
    assert sum(i["item_id"].startswith(f"item-{target}-") for i in after["items"]) >= 3, after
    recent = client.get(f"/users/{user}/profile").json()["recent_events"]
    assert [e["item_id"] for e in recent[-6:]] == [e["item_id"] for e in events]


def test_unknown_user_gets_popular_items_flagged_as_cold_start(client, world):
    body = _recommend(client, "nobody-at-all", k=3)
    assert body["cold_start"] is True
    counts = {}
    for e in world["events"]:
        counts[e.item_id] = counts.get(e.item_id, 0) + 1
    # The most frequent items (ties in any order), scored by their count.
    assert [i["score"] for i in body["items"]] == sorted(counts.values(), reverse=True)[:3]
    assert all(counts[i["item_id"]] == i["score"] for i in body["items"])
    in_cat = _recommend(client, "nobody-at-all", k=4, categories=["cat-0"])
    assert in_cat["cold_start"] is True and all(i["item_id"].startswith("item-0-") for i in in_cat["items"])
    assert client.get("/users/nobody-at-all/profile").status_code == 404


def test_a_new_user_with_unknown_items_is_served_by_the_model(client):
    events = [{"user_id": "fresh-user", "item_id": "brand-new-item", "event_type": "view"},
              {"user_id": "fresh-user", "item_id": "item-2-4", "event_type": "cart", "category_id": "cat-2"},
              {"user_id": "fresh-user", "item_id": 123456, "event_type": "purchase"}]
    assert client.post("/events", json=events).status_code == 200
    body = _recommend(client, "fresh-user", k=5)
    assert body["cold_start"] is False and len(body["items"]) == 5
    assert all(i["item_id"] not in ("brand-new-item", "123456") for i in body["items"])
    profile = client.get("/users/fresh-user/profile").json()
    assert profile["profile"] is None and len(profile["recent_events"]) == 3


def test_concurrent_requests_batched_together_get_each_their_own_answer(app, client):
    """Concurrent /recommend requests travel the chain as batches: each answer must be the
    one that user gets alone (warm and cold users and different k mixed in one burst)."""
    import asyncio

    bodies = [{"user_id": f"user-{i}", "k": 3 + i % 4} for i in range(24)]
    bodies += [{"user_id": f"cold-{i}", "k": 2, "categories": ["cat-1"]} for i in range(4)]
    alone = [_recommend(client, b["user_id"], **{k: v for k, v in b.items() if k != "user_id"}) for b in bodies]

    async def burst():
        async with httpx.AsyncClient(base_url=app["url"], headers={"X-API-Key": API_KEY}, timeout=60) as ac:
            return await asyncio.gather(*(ac.post("/recommend", json=b) for b in bodies))

    together = asyncio.run(burst())
    assert all(r.status_code == 200 for r in together), [r.text for r in together if r.status_code != 200]
    for body, single, batched in zip(bodies, alone, (r.json() for r in together)):
        assert batched["user_id"] == body["user_id"] and batched["cold_start"] == single["cold_start"]
        assert [i["item_id"] for i in batched["items"]] == [i["item_id"] for i in single["items"]]
        assert len(batched["items"]) == body["k"]


def test_rank_returns_exactly_the_given_items(client):
    items = ["item-0-3", "not-in-catalogue", "item-1-2", "item-1-3", "also-unknown", "item-2-9"]
    body = client.post("/rank", json={"user_id": "user-1", "items": items, "query": "red shoes"}).json()
    ranked = [i["item_id"] for i in body["items"]]
    assert sorted(ranked) == sorted(items) and body["query"] == "red shoes" and body["cold_start"] is False
    assert ranked[-2:] == ["not-in-catalogue", "also-unknown"]  # unknown last, in given order
    assert [i["known"] for i in body["items"]] == [True] * 4 + [False] * 2
    scores = [i["score"] for i in body["items"][:4]]
    assert scores == sorted(scores, reverse=True)
    cold = client.post("/rank", json={"user_id": "nobody-at-all", "items": items}).json()
    assert cold["cold_start"] is True and sorted(i["item_id"] for i in cold["items"]) == sorted(items)


BAD_REQUESTS = [
    ("malformed json", "POST", "/recommend", b'{"user_id": "user-1", "k": ', 422, "malformed JSON"),
    ("wrong type", "POST", "/recommend", {"user_id": "user-1", "k": "ten"}, 422, "k"),
    ("string number", "POST", "/recommend", {"user_id": "user-1", "k": "5"}, 422, "k"),
    ("missing field", "POST", "/recommend", {"k": 5}, 422, "user_id"),
    ("k zero", "POST", "/recommend", {"user_id": "user-1", "k": 0}, 422, "k"),
    ("k over limit", "POST", "/recommend", {"user_id": "user-1", "k": 51}, 422, "limit of 50"),
    ("misspelt field", "POST", "/recommend", {"user_id": "user-1", "exclude_purchase": False}, 422, "exclude_purchase"),
    ("body not an object", "POST", "/recommend", [1, 2], 422, "body"),
    ("too many items", "POST", "/rank", {"user_id": "u", "items": [f"i{j}" for j in range(101)]}, 413, "limit of 100"),
    ("repeated items", "POST", "/rank", {"user_id": "u", "items": ["a", "b", "a"]}, 422, "distinct"),
    ("no items", "POST", "/rank", {"user_id": "u", "items": []}, 422, "items"),
    ("unknown event type", "POST", "/events", [{"user_id": "u", "item_id": "i", "event_type": "like"}], 422, "event_type"),
    ("events not a list", "POST", "/events", {"user_id": "u", "item_id": "i", "event_type": "view"}, 422, "list"),
    ("no events", "POST", "/events", [], 422, "at least one"),
    ("too many events", "POST", "/events", [{"user_id": "u", "item_id": "i", "event_type": "view"}] * 201, 413, "limit of 200"),
    ("nan timestamp", "POST", "/events", b'[{"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": NaN}]', 422, "timestamp"),
    ("oversized body", "POST", "/events", b"[" + b" " * 70_000 + b"]", 413, "limit of 65536"),
    ("unknown route", "GET", "/nope", None, 404, "Not Found"),
    ("wrong method", "GET", "/recommend", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_naming_the_problem_and_the_service_keeps_serving(client, case):
    _, method, path, body, status, needle = case
    if isinstance(body, bytes):
        r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = client.request(method, path, json=body) if body is not None else client.request(method, path)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"] if isinstance(r.json()["detail"], str) else needle in json.dumps(r.json())
    assert _recommend(client, "user-2", k=3)["items"]


def test_an_oversized_streamed_body_without_content_length_is_refused(client):
    def chunks():
        for _ in range(20):
            yield b" " * 8192  # 160 KiB in total, no Content-Length header (chunked)

    r = client.post("/events", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert _recommend(client, "user-2", k=3)["items"]


def test_requests_without_the_api_key_get_401(app):
    with httpx.Client(base_url=app["url"], timeout=30) as anonymous:
        assert anonymous.post("/recommend", json={"user_id": "user-1"}).status_code == 401
        assert anonymous.post("/events", json=[{"user_id": "u", "item_id": "i", "event_type": "view"}]).status_code == 401
        assert anonymous.get("/version", headers={"X-API-Key": "wrong-key-000"}).status_code == 401
        assert anonymous.get("/version", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        assert anonymous.get("/healthz").status_code == 200  # probes need no key


def test_version_health_and_openapi(client, world):
    version = client.get("/version").json()
    manifest = json.loads((world["artifacts"] / "manifest.json").read_text())
    assert version["model"]["checkpoint"] == str(world["ckpt"]) and version["model"]["encoder"] == "lstm"
    assert version["data_version"] == manifest["data_version"]
    assert version["vocab"]["items"] == manifest["vocab_sizes"]["items"] and len(version["vocab"]["sha256"]) == 12
    assert client.get("/healthz").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/rank", "/events", "/users/{user_id}/profile", "/healthz", "/version"} <= set(paths)


def test_a_new_checkpoint_rolls_out_through_user_config_without_failed_requests(app, client, world):
    from ray import serve

    from seqrec_ray.serve.app import build_app_graph

    failures, models, done = [], [], threading.Event()

    def load():
        with httpx.Client(base_url=app["url"], headers={"X-API-Key": API_KEY}, timeout=60) as c:
            while not done.is_set():
                r = c.post("/recommend", json={"user_id": "user-9", "k": 5})
                if r.status_code == 200:
                    models.append(r.json()["model"])
                else:
                    failures.append(r.status_code)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        serve.run(build_app_graph(app["config"], user_config={"checkpoint": world["ckpt2"]}), name=APP_NAME, route_prefix="/")
        deadline = time.time() + 60
        while client.get("/version").json()["model"]["checkpoint"] != str(world["ckpt2"]) and time.time() < deadline:
            time.sleep(0.5)
    finally:
        done.set()
        thread.join()
    assert client.get("/version").json()["model"]["checkpoint"] == str(world["ckpt2"])
    assert failures == [] and models, "requests must keep succeeding during the roll-out"
    assert models[0].startswith("lstm:serve-test-0@")  # served by the old model until the swap
    assert _recommend(client, "user-9", k=5)["model"].startswith("lstm:serve-test-1@")
