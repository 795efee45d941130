"""Serve a trained checkpoint on local Ray Serve and show real requests and responses.

    python jobs/serve_demo.py --checkpoint runs/demo/train/best --store runs/demo/store.db \
        --artifacts runs/demo/artifacts [--keep-serving]

Starts a local Ray + Serve (HTTP on 127.0.0.1:8000), deploys the app that
serve_configs/local.yaml describes, then: GET /version, POST /recommend for a user with
history, POST /recommend for an unknown user (cold start: popular items), POST /events (the
user views, clicks and carts three of those), POST /recommend again (the answer reflects the
events, no retraining, no restart). For a model with item content (a catalogue was
featurized), POST /items lists a new product like one of the user's recommendations, a new
shopper views products related to it, and POST /recommend shows it among theirs
("new_item": true), scored from its content alone. Last, POST /search with two words of a
recommended product's title, one misspelt. With --keep-serving it then blocks until
Ctrl-C; otherwise it shuts Serve and Ray down.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeDemoConfig:
    checkpoint: Path
    store: str
    artifacts: Path
    host: str = "127.0.0.1"
    port: int = 8000
    keep_serving: bool = False

    def __post_init__(self) -> None:
        if not (self.checkpoint / "model.pt").is_file():
            raise ValueError(f"--checkpoint {self.checkpoint} holds no model.pt: not a checkpoint directory")
        if not (self.artifacts / "manifest.json").is_file():
            raise ValueError(f"--artifacts {self.artifacts} holds no manifest.json: not a featurize output")
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {self.port}")


def parse_args(argv: list[str] | None) -> ServeDemoConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--store", required=True, help="SQLite path or store URL loaded by featurize --store")
    p.add_argument("--artifacts", required=True, type=Path, help="featurize output (picks a demo user)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--keep-serving", action="store_true", help="block until Ctrl-C after the demo requests")
    a = p.parse_args(argv)
    try:
        return ServeDemoConfig(a.checkpoint, a.store, a.artifacts, a.host, a.port, a.keep_serving)
    except ValueError as err:
        p.error(str(err))


def pick_demo_user(artifacts: Path) -> str:
    """The user with the longest history: the most interesting recommendations."""
    import pyarrow.compute as pc

    from seqrec_ray.data.artifacts import load_sequences

    seqs = load_sequences(artifacts).select(["user_id", "items"])
    lengths = pc.list_value_length(seqs["items"])
    return seqs["user_id"][pc.index(lengths, pc.max(lengths)).as_py()].as_py()


def show(client, method: str, path: str, body=None) -> dict:
    started = time.perf_counter()
    response = client.request(method, path, json=body)
    ms = 1000 * (time.perf_counter() - started)
    print(f"\n$ curl -s -X {method} http://{client.base_url.host}:{client.base_url.port}{path}"
          + (f" -H 'content-type: application/json' -d '{json.dumps(body)}'" if body is not None else ""))
    print(f"# HTTP {response.status_code} in {ms:.0f} ms")
    print(json.dumps(response.json(), indent=2)[:3000])
    response.raise_for_status()
    return response.json()


def run_requests(cfg: ServeDemoConfig) -> None:
    import httpx

    user = pick_demo_user(cfg.artifacts)
    with httpx.Client(base_url=f"http://{cfg.host}:{cfg.port}", timeout=60) as client:
        show(client, "GET", "/version")
        popular = show(client, "POST", "/recommend", {"user_id": "a-user-nobody-has-seen", "k": 20})
        first = show(client, "POST", "/recommend", {"user_id": user, "k": 5})
        before = [i["item_id"] for i in first["items"]]
        # The user now browses popular items outside their current top-5: a new intent.
        fresh = [i["item_id"] for i in popular["items"] if i["item_id"] not in before][:3]
        now = time.time()
        events = [{"user_id": user, "item_id": item, "event_type": kind, "timestamp": now + n}
                  for n, (item, kind) in enumerate(zip(fresh, ("view", "click", "cart")))]
        show(client, "POST", "/events", events)
        second = show(client, "POST", "/recommend", {"user_id": user, "k": 5})
        after = [i["item_id"] for i in second["items"]]
        verdict = "changed" if before != after else "unchanged"
        print(f"\n# after viewing/clicking/carting {fresh}: top-5 {verdict}: {before} -> {after}")
        if show(client, "GET", "/version")["model"].get("item_content"):
            list_a_new_product(client, cfg.artifacts, after[0])
        search_with_a_typo(client, cfg.artifacts, user, after[0])


def search_with_a_typo(client, artifacts: Path, user: str, like: str) -> None:
    """POST /search with two words of ``like``'s title, the second misspelt (two letters
    swapped), as a shopper would type them."""
    from seqrec_ray.data.catalogue import load_catalogue

    catalogue = load_catalogue(str(artifacts))
    rows = {} if catalogue is None else {r["item_id"]: r for r in catalogue.to_pylist()}
    words = (rows.get(like, {}).get("title") or "").split()
    if len(words) < 2:
        print(f"\n# {like} has no title to search for")
        return
    typo = words[1][1] + words[1][0] + words[1][2:] if len(words[1]) > 3 else words[1]
    query = f"{words[0]} {typo}"
    body = show(client, "POST", "/search", {"user_id": user, "query": query, "k": 5})
    found = [(i["item_id"], rows.get(i["item_id"], {}).get("title")) for i in body["items"]]
    print(f"\n# searched {query!r} (for {' '.join(words[:2])!r}): {body['matched']} matches; top 5 {found}")


def list_a_new_product(client, artifacts: Path, like: str) -> None:
    """POST /items a product no model has seen (the content of ``like`` under a new id),
    then a new shopper views products of its category: is it among their recommendations?"""
    from seqrec_ray.data.catalogue import load_catalogue

    rows = {r["item_id"]: r for r in load_catalogue(str(artifacts)).to_pylist()}
    if like not in rows:
        print(f"\n# {like} has no catalogue row: no new product to list")
        return
    row = {k: v for k, v in rows[like].items() if k != "index" and v is not None}
    new = dict(row, item_id=f"{like}-new-listing", title=f"{row.get('title') or like} (new)")
    show(client, "POST", "/items", [new])
    related = [r["item_id"] for r in rows.values()
               if r["category_id"] == row.get("category_id") and r["item_id"] != like][:3] or [like]
    now = time.time()
    shopper = "shopper-new-to-the-shop"
    show(client, "POST", "/events", [{"user_id": shopper, "item_id": item, "event_type": "view",
                                      "timestamp": now + n} for n, item in enumerate(related)])
    body = show(client, "POST", "/recommend", {"user_id": shopper, "k": 10})
    ranked = [i["item_id"] for i in body["items"]]
    where = f"at rank {ranked.index(new['item_id']) + 1} of 10" if new["item_id"] in ranked else "not in the top 10"
    print(f"\n# listed {new['item_id']} (never trained on); after viewing {related}: it is {where}")


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM (installed after ray.init, which replaces handlers)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("[serve] stopping", flush=True)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    import ray

    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.serve.app import AppArgs, build_app
    from seqrec_ray.serve.local import local_serve

    # 4 logical CPUs at least: the four deployments ask for one each by default.
    init_ray(address="local", num_cpus=4)
    try:
        with local_serve(cfg.host, cfg.port) as server:
            print(f"[serve] deploying {cfg.checkpoint} on {server.url} ...", flush=True)
            started = time.perf_counter()
            server.run(build_app(AppArgs(checkpoint=str(cfg.checkpoint), store=cfg.store, device="cpu")), "seqrec")
            print(f"[serve] ready in {time.perf_counter() - started:.0f} s; OpenAPI schema at /docs", flush=True)
            run_requests(cfg)
            if cfg.keep_serving:
                print(f"\n[serve] serving on {server.url} until Ctrl-C", flush=True)
                wait_for_stop_signal()
    except KeyboardInterrupt:
        pass
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
