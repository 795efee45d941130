"""Fault tolerance, each a test with real processes killed by PID.

4a: a Ray Train worker SIGKILLed mid-epoch resumes through FailureConfig from its last
    checkpoint (tests/cluster_scripts/fault_train.py, its own Ray in a subprocess) and
    ends within TRAIN_TOLERANCE of the same run uninterrupted.
4b: a ProfileFetcher replica (the one that writes the store) SIGKILLed during a bounded
    loopback load on the session's Ray: Serve replaces it; requests that failed are
    counted against those in flight at the kill; every acknowledged POST /events is in
    the store afterwards.

(4c, the store killed uncleanly, is in tests/test_store.py.) Both use the synthetic
DemoShop (featurized for real), whose next item is learnable, so the metrics compared in 4a are far from zero.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

import httpx
import pytest
from cluster_scripts._procs import run_script
from conftest import shop_artifacts

pytestmark = pytest.mark.slow  # real Ray/Serve end to end: minutes on 2 cores (CI runs it)

# Absolute difference allowed between the resumed and the uninterrupted run's HR@10 and
# NDCG@10 (valid and test); their final train loss may differ by TRAIN_LOSS_RTOL. The
# resumed epochs replay the same per-(rank, epoch) seeds, and runs here matched exactly:
# the slack is for Ray Data block order, which Ray does not promise.
TRAIN_TOLERANCE = 0.02
TRAIN_LOSS_RTOL = 0.02
EPOCHS = 2  # the kill lands in epoch 2, so the restarted group runs the last epoch


def _demo_artifacts(root, users: int, store: bool = False):
    """A DemoShop featurized (in-process) into ROOT/artifacts (+ ROOT/store.db with ``store``)."""
    from seqrec_ray.sim.demo_shop import DemoShop

    shop = DemoShop(users=users, categories=8, items_per_category=25, events_per_user=20)
    return shop, *shop_artifacts(root, shop, store)


# ------------------------------------------------------------------------------ 4a


@pytest.fixture(scope="module")
def train_fault(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-fault")
    _, artifacts, _ = _demo_artifacts(root, users=400)
    return run_script("fault_train.py", ["--data", str(artifacts), "--epochs", str(EPOCHS)], root / "run",
                      timeout_s=900)


def test_worker_killed_mid_epoch_resumes_from_its_last_checkpoint(train_fault):
    result = train_fault
    assert "error" not in result, result["error"]
    kill, progress = result["kill"], result["progress"]
    assert kill, "the watcher never killed a worker"
    # Killed during epoch 2: after the epoch-1 checkpoint, before the epoch-2 one, and the
    # process logged some but not all of its epoch-2 batches.
    assert kill["checkpoints_at_kill"] == ["epoch_0001"]
    victim = [p for p in progress if p["pid"] == kill["pid"]]
    per_epoch = sum(1 for p in victim if p["call"] == 1 and "batch" in p)
    in_epoch2 = sum(1 for p in victim if p["call"] == 2 and "batch" in p)
    assert 0 < in_epoch2 < per_epoch and not any(p.get("done") and p["call"] == 2 for p in victim)
    # The restarted group started at epoch 2 (EPOCHS - 1 train_epoch calls per rank), not from scratch.
    restarted = collections.Counter((p["rank"], p["pid"]) for p in progress if p.get("done") and p["pid"] != kill["pid"]
                                    and p["t"] > kill["t"])
    assert sorted(rank for rank, _ in restarted) == [0, 1] and set(restarted.values()) == {EPOCHS - 1}
    after = [m for m in result["reports"] if m["epoch"] >= 2]
    assert after and all(m["resumed_from_epoch"] == 1 for m in after)
    assert all(m["restored_digest"] == kill["latest_digest_at_kill"] and m["restored_optimizer_step"] > 0 for m in after)


def test_resumed_run_ends_within_tolerance_of_an_uninterrupted_one(train_fault):
    base, faulted = train_fault["baseline"], train_fault["faulted"]
    assert [c["epoch"] for c in faulted["curves"]] == [c["epoch"] for c in base["curves"]] == list(range(1, EPOCHS + 1))
    assert faulted["curves"][0] == base["curves"][0] or faulted["curves"][0]["loss"] == pytest.approx(
        base["curves"][0]["loss"], rel=TRAIN_LOSS_RTOL)
    last_b, last_f = base["curves"][-1], faulted["curves"][-1]
    assert last_f["loss"] == pytest.approx(last_b["loss"], rel=TRAIN_LOSS_RTOL)
    for split_b, split_f in ((last_b["valid"], last_f["valid"]), (base["test"], faulted["test"])):
        for metric in ("hr@10", "ndcg@10"):
            assert abs(split_f[metric] - split_b[metric]) <= TRAIN_TOLERANCE, (metric, split_f, split_b)
    assert base["valid"]["hr@10"] > 0.1  # a run that learned something, so the comparison means something


# ------------------------------------------------------------------------------ 4b

APP = "seqrec-faults"
LOAD_REQUESTS = 240
LOAD_THREADS = 6
KILL_AFTER = 60  # completed requests before the kill
FETCHER_REPLICAS = 2
FAULT_API_KEY = "fault-test-key-0123"


@pytest.fixture(scope="module")
def served(serve_local, tmp_path_factory):
    """The app (2 ProfileFetcher replicas) on loopback with a trained checkpoint and SQLite store."""
    from seqrec_ray.serve.config import ServeConfig
    from seqrec_ray.serve.encoder import UserEncoder
    from seqrec_ray.serve.ingress import Ingress
    from seqrec_ray.serve.profile_fetcher import ProfileFetcher
    from seqrec_ray.serve.ranker import Ranker
    from seqrec_ray.serve.retriever import Retriever
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    root = tmp_path_factory.mktemp("serve-fault")
    shop, artifacts, store = _demo_artifacts(root, users=60, store=True)
    config = TrainConfig(model="gru", dim=16, hidden=32, epochs=2, batch_size=16, lr=0.01, max_len=10, patience=0,
                         eval_batch_size=64, seed=0, torch_threads=1)
    checkpoint = run_in_process(config, artifacts, root / "run", progress=False)["best_checkpoint"]
    key_file = root / "api_key"  # the key reaches the replicas as a file, never as an init arg
    key_file.write_text(FAULT_API_KEY)
    serve_config = ServeConfig(checkpoint=checkpoint, store=store, api_key_file=str(key_file))
    app = Ingress.bind(ProfileFetcher.options(num_replicas=FETCHER_REPLICAS).bind(serve_config),
                       UserEncoder.bind(serve_config), Ranker.bind(serve_config), Retriever.bind(serve_config),
                       serve_config)
    url = serve_local.run(app, APP)
    yield {"url": url, "store": store, "key": FAULT_API_KEY,
           "items": sorted({e.item_id for e in shop.events()})}
    serve_local.delete(APP)


def _fetcher_replicas() -> list[str]:
    from seqrec_ray.serve.local import replica_names

    return replica_names(APP, "ProfileFetcher")


def _kill_replica(name: str) -> int:
    """SIGKILL the replica's process (a crash, not a graceful stop); returns its PID."""
    from seqrec_ray.serve.local import replica_pid

    pid = replica_pid(name)
    os.kill(pid, signal.SIGKILL)
    return pid


def _request(client: httpx.Client, i: int, items: list[str]) -> tuple[str, httpx.Response]:
    """Even i: one event with a unique session id (to find it in the store); odd i: a recommendation."""
    if i % 2 == 0:
        event = {"user_id": f"load-{i % 30}", "item_id": items[i % len(items)], "event_type": "view",
                 "timestamp": 1.8e9 + i, "session_id": f"req-{i}"}
        return "events", client.post("/events", json=[event])
    return "recommend", client.post("/recommend", json={"user_id": f"user-{i % 60}", "k": 5})


def _run_load(served) -> tuple[list[dict], dict]:
    records: list[dict] = []
    lock, next_i, kill = threading.Lock(), iter(range(LOAD_REQUESTS)), {}

    def worker():
        with httpx.Client(base_url=served["url"], headers={"X-API-Key": served["key"]}, timeout=120) as client:
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    return
                start = time.monotonic()
                try:
                    kind, resp = _request(client, i, served["items"])
                    status, text = resp.status_code, resp.text[:200]
                except httpx.HTTPError as err:
                    kind, status, text = ("events" if i % 2 == 0 else "recommend"), 0, repr(err)
                with lock:
                    records.append({"i": i, "kind": kind, "start": start, "end": time.monotonic(), "status": status,
                                    "text": text})
                    if len(records) == KILL_AFTER:
                        kill["due"] = True

    def killer():
        while not kill.get("due"):
            time.sleep(0.01)
        kill["name"] = _fetcher_replicas()[0]
        kill["t"] = time.monotonic()
        kill["pid"] = _kill_replica(kill["name"])

    threads = [threading.Thread(target=worker) for _ in range(LOAD_THREADS)] + [threading.Thread(target=killer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return records, kill


def test_killed_replica_is_replaced_and_no_acknowledged_event_is_lost(served):
    from ray import serve

    from seqrec_ray.store import open_store

    assert len(_fetcher_replicas()) == FETCHER_REPLICAS
    records, kill = _run_load(served)
    assert len(records) == LOAD_REQUESTS and "pid" in kill, kill

    # Serve replaces the killed replica: the same number again, the killed one gone.
    def replaced():
        status = serve.status().applications[APP]
        running = status.deployments["ProfileFetcher"].replica_states.get("RUNNING", 0)
        names = _fetcher_replicas()
        return running == FETCHER_REPLICAS and len(names) == FETCHER_REPLICAS and kill["name"] not in names
    deadline = time.monotonic() + 180
    while not replaced():
        assert time.monotonic() < deadline, f"replica {kill['name']} not replaced: {serve.status().applications[APP]}"
        time.sleep(1)
    with httpx.Client(base_url=served["url"], headers={"X-API-Key": served["key"]}, timeout=60) as client:
        assert _request(client, 0, served["items"])[1].status_code == 200

    failed = [r for r in records if r["status"] != 200]
    in_flight = [r for r in records if r["start"] <= kill["t"] <= r["end"]]
    beyond = [r for r in failed if not r["start"] <= kill["t"] <= r["end"]]
    print(f"\n4b: {len(records)} requests, {len(failed)} failed, {len(in_flight)} in flight at the kill, "
          f"{len(beyond)} failures beyond those; failures: {[(r['kind'], r['status'], r['text'][:80]) for r in failed]}")
    assert beyond == [], beyond
    assert all(r["status"] in (200, 500, 503) or r["status"] == 0 for r in failed)  # no client-error codes

    acknowledged = [r["i"] for r in records if r["kind"] == "events" and r["status"] == 200]
    assert len(acknowledged) >= LOAD_REQUESTS // 2 - len(failed)
    with open_store(served["store"]) as store:
        stored = {e.session_id for u in range(30) for e in store.get_history(f"load-{u}", 10_000)}
    lost = [i for i in acknowledged if f"req-{i}" not in stored]
    assert lost == [], f"acknowledged events missing from the store: {lost}"
