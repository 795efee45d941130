"""Serving benchmark: the real app over HTTP against its framework and compute floors.

    python bench/serve.py                       # self-contained: a demo shop + a quick checkpoint
    python bench/serve.py --checkpoint CKPT --store runs/demo/store.db --artifacts runs/demo/artifacts

In one run, on a fresh local Ray with Serve on loopback only:

- ``/recommend``, ``/search`` and ``/events`` of the app at concurrency 1, 8 and 32: p50/p99
  latency and throughput (each level bounded by --requests and --seconds); the search
  queries are two or three words of the demo shop's titles (brand, product type, number);
- a trivial 3-hop no-op Serve chain (FastAPI ingress awaiting three empty deployments, the
  same shape as Ingress -> fetcher -> encoder -> ranker): the framework floor;
- fetch + encode + rank called in-process without Serve, one request at a time: the
  compute floor;
- full-catalogue top-10 over a random 1,000,000 x 64 item table, per request at batch 1
  and batch 32.

The /events load appends view events of synthetic users ``bench-0`` .. ``bench-499`` to the
given store (the demo shop's store is a temporary file).

Goals (2-core machine): /recommend p50 at c=1 <= 1.5x the no-op chain's p50; throughput at
c=32 >= 3x c=1; /search p50 at c=1 <= 1.5x /recommend's; 1M x 64 ranking <= 20 ms per request.
"""

# No `from __future__ import annotations`: FastAPI must see the no-op route's request
# model itself, which is imported inside a function.
import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LEVELS = (1, 8, 32)


@dataclass(frozen=True)
class BenchConfig:
    checkpoint: str | None
    store: str | None
    artifacts: str | None
    requests: int = 400  # per endpoint and concurrency level
    seconds: float = 20.0  # per endpoint and concurrency level
    catalogue_items: int = 1_000_000
    catalogue_dim: int = 64
    seed: int = 0
    output: str | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.checkpoint, self.store, self.artifacts)]
        if any(given) and not all(given):
            raise ValueError("--checkpoint, --store and --artifacts go together (or none: the demo shop)")
        if self.requests < 10:
            raise ValueError(f"requests must be >= 10, got {self.requests}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        if self.catalogue_items < 3 or self.catalogue_dim < 1:
            raise ValueError(f"catalogue must have >= 3 items and dim >= 1, got {self.catalogue_items} x {self.catalogue_dim}")


def summarise(latencies_s: list, wall_s: float, errors: dict) -> dict:
    ms = np.asarray(latencies_s) * 1000
    return {
        "requests": len(ms), "errors": sum(errors.values()), "error_statuses": errors,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "throughput_rps": len(ms) / wall_s if wall_s > 0 else None,
    }


async def drive(url: str, bodies: list, concurrency: int, limit: int, seconds: float, headers: dict) -> dict:
    """POST bodies (round-robin) with ``concurrency`` workers until ``limit`` or ``seconds``."""
    import httpx

    latencies, errors, issued = [], {}, 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < limit and time.perf_counter() < deadline:
            body = bodies[issued % len(bodies)]
            issued += 1
            start = time.perf_counter()
            r = await client.post(url, json=body, headers=headers)
            if r.status_code == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors[r.status_code] = errors.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return summarise(latencies, wall, errors)


def build_noop_app():
    """Ingress -> three empty hops, awaited one after another like the real ingress."""
    from fastapi import FastAPI
    from ray import serve

    from seqrec_ray.serve.schemas import RecommendRequest

    @serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
    class Noop:
        async def __call__(self, x):
            return x

    app = FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
    @serve.ingress(app)
    class NoopIngress:
        def __init__(self, a, b, c):
            self._hops = (a, b, c)

        @app.post("/recommend")
        async def recommend(self, req: RecommendRequest) -> dict:
            for hop in self._hops:
                await hop.remote(req.user_id)
            return {"user_id": req.user_id, "items": []}

    return NoopIngress.bind(Noop.bind(), Noop.bind(), Noop.bind())


def demo_world(tmp: Path, seed: int) -> tuple[str, str, list[str]]:
    """A 2,000-user, 2,000-item demo shop with its catalogue: featurized artifacts (a search
    index among them), store and a 1-epoch LSTM checkpoint."""
    from seqrec_ray.data.pipeline import featurize_in_process
    from seqrec_ray.sim.demo_shop import DemoShop
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    shop = DemoShop(users=2000, categories=20, items_per_category=100, events_per_user=20, intents=2, seed=seed)
    artifacts, store = tmp / "artifacts", str(tmp / "store.db")
    items = tmp / "items.jsonl"
    items.write_text("".join(json.dumps(row) + "\n" for row in shop.catalogue()))
    featurize_in_process(shop.events(), str(artifacts), store=store, items=str(items))
    config = TrainConfig(model="lstm", epochs=1, max_len=50, batch_size=256, seed=seed, run_name="bench-serve", patience=0)
    result = run_in_process(config, artifacts, tmp / "run", progress=False)
    return result["best_checkpoint"], store, [f"user-{u}" for u in range(shop.users)]


def sample_users(artifacts: str, n: int, seed: int) -> list[str]:
    from seqrec_ray.data.artifacts import load_sequences

    users = load_sequences(artifacts).column("user_id").to_pylist()
    rng = np.random.default_rng(seed)
    return [users[i] for i in rng.choice(len(users), size=min(n, len(users)), replace=False)]


def in_process_floor(checkpoint: str, store_url: str, users: list[str], requests: int) -> dict:
    """The app's per-request work without Serve: fetch, encode, rank, one at a time."""
    import torch

    from seqrec_ray.serve.model import encode_histories, load_serving_model
    from seqrec_ray.serve.ranking import RankerModel, recommend_batch, recommend_query
    from seqrec_ray.store import open_store

    torch.set_num_threads(1)  # as in a replica (Ray gives a 0.25-CPU actor one thread)
    model = load_serving_model(checkpoint, "cpu")
    ranker = RankerModel.from_serving(model)
    latencies = []
    with open_store(store_url) as store:
        started = time.perf_counter()
        for i in range(requests):
            t = time.perf_counter()
            user = users[i % len(users)]
            store.get_profile(user)
            history = [e.as_dict() for e in store.get_history(user, 200)]
            vector = encode_histories(model, [history])[0]
            query = recommend_query(10, history, True, vector=vector, used=min(len(history), model.max_len))
            recommend_batch(ranker, [query], per_item=2)
            latencies.append(time.perf_counter() - t)
        wall = time.perf_counter() - started
    return summarise(latencies, wall, {})


def catalogue_ranking(items: int, dim: int, seed: int, repeats: int = 7) -> dict:
    """Per-request time of top-10 over a random items x dim table (20 purchases excluded),
    at batch 1 and 32, with the float32 pass and the bfloat16 pass (+ exact rescoring)."""
    import torch

    from seqrec_ray.data.vocab import Vocab
    from seqrec_ray.serve.live_items import LiveCatalogue
    from seqrec_ray.serve.ranking import RankerModel, RecommendQuery, fast_table, recommend_batch

    gen = torch.Generator().manual_seed(seed)
    vocab = Vocab(
        item_raw_ids=["<pad>", "<oov>"] + [f"i{j}" for j in range(items - 2)],
        item_category=np.ones(items, dtype=np.int64), item_counts=np.ones(items, dtype=np.int64),
        category_raw_ids=["<pad>", "<oov>"],
    )
    emb = torch.randn(items, dim, generator=gen)
    ones = torch.ones(items, dtype=torch.int64)
    rng = np.random.default_rng(seed)
    out = {"items": items, "dim": dim, "torch_threads": torch.get_num_threads()}
    for dtype in ("float32", "bfloat16"):
        model = RankerModel("bench", "random", emb, ones, ones, LiveCatalogue(vocab), fast_table(emb, dtype))
        for batch in (1, 32):
            times = []
            for _ in range(repeats):
                queries = [RecommendQuery(k=10, vector=rng.standard_normal(dim).astype(np.float32),
                                          exclude=tuple(f"i{j}" for j in rng.integers(0, items - 2, 20))) for _ in range(batch)]
                t = time.perf_counter()
                recommend_batch(model, queries, per_item=2)
                times.append((time.perf_counter() - t) / batch)
            out[f"{dtype}_batch{batch}_ms_per_request"] = float(np.median(times) * 1000)
    return out


def serve_runs(config: BenchConfig, checkpoint: str, store: str, users: list[str]) -> dict:
    import ray

    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.serve.local import local_serve

    init_ray(address="local", num_cpus=4, log_to_driver=False)  # a fresh instance, never someone else's cluster
    try:
        with local_serve() as server:
            return _drive_apps(server, config, checkpoint, store, users)
    finally:
        ray.shutdown()


def _drive_apps(server, config: BenchConfig, checkpoint: str, store: str, users: list[str]) -> dict:
    from seqrec_ray.serve.app import build_app_graph
    from seqrec_ray.serve.config import ServeConfig

    base = server.run(build_app_graph(ServeConfig(checkpoint=checkpoint, store=store)), "bench-seqrec")
    server.run(build_noop_app(), "bench-noop", route_prefix="/noop")
    rec = [{"user_id": u, "k": 10} for u in users]
    rng = np.random.default_rng(config.seed)
    events = [[{"user_id": f"bench-{i % 500}", "item_id": f"bench-item-{int(rng.integers(1000))}", "event_type": "view"}]
              for i in range(config.requests)]
    targets = {"recommend": (f"{base}/recommend", rec), "noop_chain": (f"{base}/noop/recommend", rec),
               "events": (f"{base}/events", events)}
    queries = search_queries(checkpoint, config.requests, config.seed)
    if queries:  # a checkpoint with a search index
        search = [{"user_id": u, "query": q, "k": 10} for u, q in zip(users * (len(queries) // len(users) + 1), queries)]
        targets["search"] = (f"{base}/search", search)
    for url, bodies in targets.values():  # warm up connections, replicas and batching
        asyncio.run(drive(url, bodies, 8, 40, 30, {}))
    out: dict = {name: {} for name in targets}
    for c in LEVELS:
        for name, (url, bodies) in targets.items():
            out[name][f"c{c}"] = asyncio.run(drive(url, bodies, c, config.requests, config.seconds, {}))
            print(f"  {name:<11} c={c:<3} {_fmt(out[name][f'c{c}'])}", flush=True)
    return out


def search_queries(checkpoint: str, n: int, seed: int) -> list[str]:
    """``n`` queries made of the first two or three words of random catalogue titles; [] for
    a checkpoint without a search index (or a catalogue without titles)."""
    from seqrec_ray.data.catalogue import load_catalogue
    from seqrec_ray.data.search_index import has_search_index

    meta = json.loads((Path(checkpoint) / "meta.json").read_text())
    catalogue = load_catalogue(meta["artifacts_dir"]) if has_search_index(checkpoint) else None
    titles = [t for t in (catalogue.column("title").to_pylist() if catalogue is not None else []) if t]
    if not titles:
        return []
    rng = np.random.default_rng(seed)
    return [" ".join(titles[int(i)].split()[: int(w)]) for i, w in zip(rng.integers(len(titles), size=n),
                                                                       rng.integers(2, 4, size=n))]


def run_bench(config: BenchConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        if config.checkpoint is None:
            print("building the demo shop and a 1-epoch checkpoint ...", flush=True)
            checkpoint, store, users = demo_world(Path(tmp), config.seed)
        else:
            checkpoint, store = config.checkpoint, config.store
            users = sample_users(config.artifacts, 1000, config.seed)
        print("serve runs (HTTP on 127.0.0.1):", flush=True)
        http = serve_runs(config, checkpoint, store, users)
        floor = in_process_floor(checkpoint, store, users, min(config.requests, 400))
        print(f"  in-process  c=1   {_fmt(floor)}", flush=True)
    print(f"full-catalogue ranking, {config.catalogue_items:,} x {config.catalogue_dim}, 1 thread ...", flush=True)
    catalogue = catalogue_ranking(config.catalogue_items, config.catalogue_dim, config.seed)
    result = {"config": asdict(config), "http": http, "in_process": floor, "catalogue": catalogue, "goals": goals(http, catalogue)}
    print(json.dumps({"catalogue": catalogue, "goals": result["goals"]}, indent=2))
    if config.output:
        Path(config.output).write_text(json.dumps(result, indent=2))
    return result


def goals(http: dict, catalogue: dict) -> dict:
    rec, noop = http["recommend"], http["noop_chain"]
    p50_ratio = rec["c1"]["p50_ms"] / noop["c1"]["p50_ms"]
    scale = rec["c32"]["throughput_rps"] / rec["c1"]["throughput_rps"]
    timings = {k: round(v, 2) for k, v in catalogue.items() if k.endswith("_ms_per_request")}
    out = {
        "recommend_p50_c1_over_noop_p50_c1": round(p50_ratio, 2), "goal_p50_ratio_le_1.5": p50_ratio <= 1.5,
        "recommend_rps_c32_over_c1": round(scale, 2), "goal_scaling_ge_3": scale >= 3,
        "catalogue_ms_per_request": timings,
        "goal_catalogue_le_20ms": {k: v <= 20 for k, v in timings.items()},
    }
    if "search" in http:
        search_ratio = http["search"]["c1"]["p50_ms"] / rec["c1"]["p50_ms"]
        out.update(search_p50_c1_over_recommend_p50_c1=round(search_ratio, 2),
                   goal_search_p50_ratio_le_1_5=search_ratio <= 1.5,
                   search_rps_c32=round(http["search"]["c32"]["throughput_rps"], 1))
    return out


def _fmt(s: dict) -> str:
    if not s["requests"]:
        return f"no successful requests; errors by status: {s['error_statuses']}"
    return (f"p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  {s['throughput_rps']:7.1f} req/s  "
            f"({s['requests']} ok, {s['errors']} errors)")


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint directory (default: train a demo one)")
    p.add_argument("--store", help="store URL or SQLite path holding the users' histories")
    p.add_argument("--artifacts", help="artifacts directory to draw user ids from")
    p.add_argument("--requests", type=int, default=400, help="requests per endpoint and concurrency level")
    p.add_argument("--seconds", type=float, default=20.0, help="time limit per endpoint and concurrency level")
    p.add_argument("--catalogue-items", type=int, default=1_000_000)
    p.add_argument("--catalogue-dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also write the full result as JSON here")
    a = p.parse_args(argv)
    try:
        return BenchConfig(a.checkpoint, a.store, a.artifacts, a.requests, a.seconds, a.catalogue_items, a.catalogue_dim, a.seed, a.output)
    except ValueError as err:
        p.error(str(err))


if __name__ == "__main__":
    run_bench(parse_args())
