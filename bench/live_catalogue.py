"""Live-catalogue benchmark: /recommend latency before and after a share of the catalogue
was added to the running service through POST /items, in one run.

    python bench/live_catalogue.py                                # 1,000,000 items, 10 % posted live
    python bench/live_catalogue.py --items 20000 --requests 50    # a smoke run

On a fresh local Ray with Serve on loopback only:

1. a synthetic shop of ``(1 - live_share) * items`` trained items: a catalogue Parquet file
   (title words, category, brand, price, attributes) and a log of ``events_per_item``
   events per item spread over users of ``events_per_user`` events, featurized in process
   with the catalogue and an SQLite store (which then holds every user's history);
2. a checkpoint of an UNTRAINED encoder with item content (random initial weights: the
   latency of a request does not depend on the weight values, so nothing is trained);
3. the app deployed (0.25-CPU replicas); ``/recommend`` at concurrency 1 for users with a
   history: "before", the baseline, no live items;
4. ``live_share * items`` new items POSTed to /items in batches of ``batch`` (time and
   items/s); one /recommend then makes the encoder and ranker replicas replay the item log
   (timed apart: the catch-up cost); then /recommend at c=1 again: "after";
5. correctness: a probe user who viewed posted items gets posted items back with
   ``new_item: true`` (within the probe category, which only posted items and one trained
   item share, so random weights cannot hide them), /rank scores posted items (non-null)
   and /version counts every posted item as live.

Prints a table (p50/p90/p99 and req/s at c=1, before and after, their p50 ratio), the
machine load before and after, the peak RSS of every Serve process (sampled each second),
and with --output writes the whole result as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

APP = "live"
PROBE_CATEGORY = "cat-live"  # posted probe items, and exactly one trained item (so the vocabulary knows it)
PROBE_BRAND = "brand-live"
PROBE_ITEMS = 200  # posted items in the probe category
PROBE_USER = "probe-live-user"
T0 = 1.7e9  # log timestamps start here (wall-clock seconds)


@dataclass(frozen=True)
class LiveBenchConfig:
    items: int = field(default=1_000_000, metadata={"help": "catalogue size after the live posts (N)"})
    live_share: float = field(default=0.1, metadata={"help": "share of N posted live to /items"})
    requests: int = field(default=400, metadata={"help": "/recommend requests per measured phase (c=1)"})
    warmup: int = field(default=20, metadata={"help": "unmeasured /recommend requests before each phase"})
    batch: int = field(default=1000, metadata={"help": "items per POST /items request"})
    events_per_item: int = field(default=2, metadata={"help": "log events per trained item"})
    events_per_user: int = field(default=20, metadata={"help": "log events per user"})
    model: str = field(default="lstm", metadata={"help": "encoder of the untrained checkpoint (lstm | gru | transformer)"})
    num_cpus: int = field(default=2, metadata={"help": "CPUs of the local Ray instance"})
    seed: int = 0
    output: str | None = field(default=None, metadata={"help": "also write the full result as JSON here"})

    def __post_init__(self) -> None:
        if not 0 < self.live_share < 1:
            raise ValueError(f"live_share must be in (0, 1), got {self.live_share!r}")
        if self.live_items < PROBE_ITEMS or self.trained_items < 100:
            raise ValueError(f"items={self.items} with live_share={self.live_share} gives {self.trained_items} trained "
                             f"and {self.live_items} live items; need >= 100 and >= {PROBE_ITEMS}")
        for name in ("requests", "batch", "events_per_item", "events_per_user", "num_cpus"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup!r}")
        if self.events_per_user < 3:
            raise ValueError(f"events_per_user must be >= 3 (two are held out as valid/test), got {self.events_per_user}")

    @property
    def live_items(self) -> int:
        return int(round(self.items * self.live_share))

    @property
    def trained_items(self) -> int:
        return self.items - self.live_items


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_module(name: str):
    """A sibling benchmark (bench/serve.py, bench/soak.py) as a module, for its helpers."""
    module_name = f"bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the synthetic shop


def catalogue_columns(prefix: str, n: int, rng: np.random.Generator, categories: int) -> dict[str, list]:
    """``n`` catalogue rows as columns: ids ``prefix-0000000``..., 3-6 title words, one of
    ``categories`` categories, one of 5 brands per category, a price, 2-4 attributes."""
    category = rng.integers(categories, size=n)
    brand = category * 5 + rng.integers(5, size=n)
    words = rng.integers(5000, size=(n, 6))
    n_words = rng.integers(3, 7, size=n)
    attributes = rng.integers(1000, size=(n, 4))
    n_attributes = rng.integers(2, 5, size=n)
    price = np.round(np.exp(rng.normal(3.0, 1.0, size=n)), 2)
    return {
        "item_id": [f"{prefix}-{i:07d}" for i in range(n)],
        "title": [" ".join(f"w{w}" for w in row[:k]) for row, k in zip(words.tolist(), n_words.tolist())],
        "category_id": [f"cat-{c:04d}" for c in category.tolist()],
        "brand": [f"brand-{b:05d}" for b in brand.tolist()],
        "price": price.tolist(),
        "attributes": [[f"attr-{a}" for a in row[:k]] for row, k in zip(attributes.tolist(), n_attributes.tolist())],
    }


def live_rows(config: LiveBenchConfig, categories: int) -> list[dict]:
    """The items to post: like the trained ones; the first PROBE_ITEMS in the probe category."""
    rng = np.random.default_rng(config.seed + 1)
    columns = catalogue_columns("live", config.live_items, rng, categories)
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    for row in rows[:PROBE_ITEMS]:
        row["category_id"], row["brand"] = PROBE_CATEGORY, PROBE_BRAND
    return rows


def event_log(items: list[str], item_category: list[str], config: LiveBenchConfig, rng: np.random.Generator):
    """Every trained item ``events_per_item`` times, shuffled over users of
    ``events_per_user`` events each (a minute apart), mostly views: an ``EVENT_SCHEMA`` table."""
    import pyarrow as pa

    from seqrec_ray import schema as S

    picks = rng.permutation(np.repeat(np.arange(len(items)), config.events_per_item))
    position = np.arange(len(picks))
    user = position // config.events_per_user
    timestamp = T0 + user * 3600.0 + (position % config.events_per_user) * 60.0
    types = np.array(["view", "click", "cart", "purchase"])[rng.choice(4, size=len(picks), p=[0.8, 0.1, 0.05, 0.05])]
    item_ids, categories = np.asarray(items, dtype=object), np.asarray(item_category, dtype=object)
    columns = {
        S.USER_ID: pa.array([f"user-{u}" for u in user.tolist()], pa.string()),
        S.ITEM_ID: pa.array(item_ids[picks], pa.string()),
        S.EVENT_TYPE: pa.array(types, pa.string()),
        S.TIMESTAMP: pa.array(timestamp, pa.float64()),
        S.CATEGORY_ID: pa.array(categories[picks], pa.string()),
    }
    n = len(picks)
    for f in S.EVENT_SCHEMA:
        if f.name not in columns:
            columns[f.name] = pa.nulls(n, f.type)
    return pa.table({f.name: columns[f.name] for f in S.EVENT_SCHEMA}, schema=S.EVENT_SCHEMA)


def build_shop(tmp: Path, config: LiveBenchConfig, categories: int) -> tuple[Path, str, dict]:
    """Catalogue file + log -> featurized artifacts (with catalogue) and a loaded SQLite store."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seqrec_ray.data.pipeline import featurize_in_process

    timings = {}
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    columns = catalogue_columns("item", config.trained_items, rng, categories)
    columns["category_id"][0] = PROBE_CATEGORY  # the probe category's one trained item
    catalogue_path = tmp / "catalogue.parquet"
    pq.write_table(pa.table(columns), catalogue_path)
    events = event_log(columns["item_id"], columns["category_id"], config, rng)
    timings["generate_s"] = time.perf_counter() - started
    progress(f"generated {config.trained_items:,} catalogue rows and {events.num_rows:,} events "
             f"({timings['generate_s']:.1f}s); featurizing in process with --items and --store ...")
    artifacts, store = tmp / "artifacts", f"sqlite:///{tmp / 'store.db'}"
    started = time.perf_counter()
    manifest = featurize_in_process(events, str(artifacts), store=store, items=str(catalogue_path))
    timings["featurize_s"] = time.perf_counter() - started
    timings["events"] = events.num_rows
    timings["vocab_sizes"] = manifest.get("vocab_sizes")
    progress(f"featurized in {timings['featurize_s']:.1f}s: vocab {manifest.get('vocab_sizes')}")
    return artifacts, store, timings


def untrained_checkpoint(artifacts: Path, out_dir: Path, config: LiveBenchConfig) -> tuple[Path, dict]:
    """A freshly initialised encoder with item content (every field), saved as a checkpoint."""
    import torch

    from seqrec_ray.data.artifacts import load_manifest, load_sequences
    from seqrec_ray.models import build_encoder
    from seqrec_ray.train.baselines import train_item_counts
    from seqrec_ray.train.checkpoint import save_checkpoint
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.content import install_item_content, load_item_content

    started = time.perf_counter()
    train = TrainConfig(model=config.model, dim=64, item_content="all", seed=config.seed, run_name="bench-live-untrained")
    vocab_sizes = load_manifest(str(artifacts))["vocab_sizes"]
    counts = train_item_counts(load_sequences(str(artifacts)), int(vocab_sizes["items"]))
    content = load_item_content(train, artifacts, counts)
    torch.manual_seed(config.seed)
    encoder = build_encoder(train.encoder_config(vocab_sizes, content.fields))
    install_item_content(encoder, content)
    path = save_checkpoint(out_dir, encoder, train, artifacts,
                           meta={"epoch": 0, "note": "untrained: for latency only"})
    info = {"seconds": time.perf_counter() - started, "content_fields": list(content.fields),
            "items_with_id_row": int(content.has_id.sum()), "model_pt_mib": (path / "model.pt").stat().st_size / 2**20}
    progress(f"untrained {config.model} checkpoint (dim 64, content {','.join(content.fields)}) in {info['seconds']:.1f}s")
    return path, info


# ---------------------------------------------------------------- measuring


def measure(client, url: str, bodies: list, n: int, summarise) -> dict:
    """``n`` POSTs one at a time (concurrency 1), bodies round-robin: p50/p90/p99, req/s."""
    latencies, errors = [], {}
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        r = client.post(url, json=bodies[i % len(bodies)])
        if r.status_code == 200:
            latencies.append(time.perf_counter() - t)
        else:
            errors[r.status_code] = errors.get(r.status_code, 0) + 1
    out = summarise(latencies, time.perf_counter() - started, errors)
    out["p90_ms"] = float(np.percentile(np.asarray(latencies) * 1000, 90)) if latencies else None
    return out


def post_items(client, url: str, rows: list[dict], batch: int) -> dict:
    latencies, accepted = [], 0
    started = time.perf_counter()
    next_report = started + 10.0
    for start in range(0, len(rows), batch):
        t = time.perf_counter()
        r = client.post(f"{url}/items", json=rows[start:start + batch])
        if r.status_code != 200:
            raise RuntimeError(f"POST /items (rows {start}..{start + batch}) answered {r.status_code}: {r.text[:500]}")
        latencies.append(time.perf_counter() - t)
        accepted += r.json()["accepted"]
        if time.perf_counter() >= next_report:
            progress(f"  posted {start + batch:,} / {len(rows):,} items")
            next_report += 10.0
    wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"items": len(rows), "accepted": accepted, "requests": len(latencies), "batch": batch, "seconds": wall,
            "items_per_s": len(rows) / wall, "request_p50_ms": float(np.percentile(ms, 50)),
            "request_p99_ms": float(np.percentile(ms, 99))}


class RssSampler:
    """Peak RSS (MiB) of the given processes, sampled once a second in a thread."""

    def __init__(self, pids: dict[str, int], rss_mib) -> None:
        self._pids, self._rss_mib = pids, rss_mib
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, float]:
        now = self._rss_mib(self._pids)
        for name, mib in now.items():
            self.peak[name] = max(self.peak.get(name, 0.0), mib)
        return now

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def correctness(client, url: str, probe_items: list[str], trained_items: list[str], live_items: int) -> dict:
    """A probe user who viewed posted probe items: new items come back flagged; /rank scores them."""
    events = [{"user_id": PROBE_USER, "item_id": item, "event_type": "view", "timestamp": T0 + 1e7 + i}
              for i, item in enumerate(probe_items[:10])]
    client.post(f"{url}/events", json=events).raise_for_status()
    anywhere = client.post(f"{url}/recommend", json={"user_id": PROBE_USER, "k": 100}).raise_for_status().json()
    in_probe = client.post(f"{url}/recommend", json={"user_id": PROBE_USER, "k": 10, "categories": [PROBE_CATEGORY]})
    in_probe = in_probe.raise_for_status().json()
    candidates = probe_items[10:13] + trained_items[1:3] + ["never-posted-item"]
    ranked = client.post(f"{url}/rank", json={"user_id": PROBE_USER, "items": candidates}).raise_for_status().json()
    by_id = {r["item_id"]: r for r in ranked["items"]}
    version = client.get(f"{url}/version").raise_for_status().json()
    new_anywhere = [r["item_id"] for r in anywhere["items"] if r["new_item"]]
    new_in_probe = [r["item_id"] for r in in_probe["items"] if r["new_item"]]
    posted = set(probe_items)
    checks = {
        "probe_user_warm": not anywhere["cold_start"],
        "new_items_in_probe_category_top10": len(new_in_probe) > 0 and set(new_in_probe) <= posted,
        "rank_scores_new_items": all(by_id[i]["score"] is not None and by_id[i]["new_item"] for i in probe_items[10:13]),
        "rank_trained_items_not_new": all(by_id[i]["score"] is not None and not by_id[i]["new_item"] for i in trained_items[1:3]),
        "rank_unknown_item_null": by_id["never-posted-item"]["score"] is None,
        "version_live_items": version["live_items"] == live_items,
    }
    return {
        "checks": checks, "all_ok": all(checks.values()),
        "new_items_in_unfiltered_top100": len(new_anywhere),
        "new_items_in_probe_category_top10": len(new_in_probe),
        "probe_category_top10": [(r["item_id"], r["new_item"], round(r["score"], 4)) for r in in_probe["items"]],
        "rank": [(r["item_id"], r["score"], r["new_item"], r["known"]) for r in ranked["items"]],
        "version_live_items": version["live_items"],
    }


# ---------------------------------------------------------------- the run


def serve_phases(config: LiveBenchConfig, checkpoint: Path, store: str, users: list[str], rows: list[dict],
                 trained_ids: list[str]) -> dict:
    import httpx
    import ray

    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.serve.app import build_app_graph
    from seqrec_ray.serve.config import ServeConfig
    from seqrec_ray.serve.local import local_serve

    bench_serve, soak = bench_module("serve"), bench_module("soak")
    out: dict = {}
    started = time.perf_counter()
    init_ray(address="local", num_cpus=config.num_cpus, log_to_driver=False)  # a fresh instance, never someone else's
    try:
        with local_serve() as server:
            serve_config = ServeConfig(checkpoint=str(checkpoint), store=store, api_key_env=None,
                                       max_posted_items=max(1000, config.batch),
                                       max_body_bytes=max(1 << 20, 1024 * config.batch))
            url = server.run(build_app_graph(serve_config), APP)
            out["deploy_s"] = time.perf_counter() - started
            progress(f"app deployed on {url} in {out['deploy_s']:.1f}s (ray.init + serve.start + serve.run)")
            with RssSampler(soak.serve_processes(), soak.rss_mib) as rss, httpx.Client(timeout=600) as client:
                out["rss_mib_start"] = rss.sample()
                bodies = [{"user_id": u, "k": 10} for u in users]
                out.update(run_phases(client, url, config, bodies, rows, trained_ids, bench_serve.summarise))
                out["rss_mib_end"] = rss.sample()
            out["rss_mib_peak"] = rss.peak
    finally:
        ray.shutdown()
    return out


def run_phases(client, url: str, config: LiveBenchConfig, bodies: list, rows: list[dict], trained_ids: list[str],
               summarise) -> dict:
    out: dict = {}
    rec = f"{url}/recommend"
    progress(f"before: {config.warmup} warm-up + {config.requests} /recommend at c=1 "
             f"({config.trained_items:,} items, none live) ...")
    measure(client, rec, bodies, config.warmup, summarise)
    out["before"] = measure(client, rec, bodies, config.requests, summarise)
    progress(f"  before: {fmt(out['before'])}")
    progress(f"posting {len(rows):,} items in batches of {config.batch} ...")
    out["posting"] = post_items(client, url, rows, config.batch)
    progress(f"  posted in {out['posting']['seconds']:.1f}s ({out['posting']['items_per_s']:,.0f} items/s)")
    t = time.perf_counter()
    first = client.post(rec, json=bodies[0])
    out["catch_up"] = {"status": first.status_code, "first_request_ms": (time.perf_counter() - t) * 1000}
    first.raise_for_status()
    progress(f"  first /recommend after the posts (replicas replay the item log): "
             f"{out['catch_up']['first_request_ms']:.0f} ms")
    progress(f"after: {config.warmup} warm-up + {config.requests} /recommend at c=1 ({config.items:,} items) ...")
    measure(client, rec, bodies, config.warmup, summarise)
    out["after"] = measure(client, rec, bodies, config.requests, summarise)
    progress(f"  after: {fmt(out['after'])}")
    probe = [r["item_id"] for r in rows[:PROBE_ITEMS]]
    out["correctness"] = correctness(client, url, probe, trained_ids, len(rows))
    progress(f"  correctness: {out['correctness']['checks']}")
    return out


def run_bench(config: LiveBenchConfig, argv: list[str]) -> dict:
    command = " ".join(["python", "bench/live_catalogue.py", *argv])
    load_before = os.getloadavg()
    categories = max(20, config.items // 5000)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        tmp_path = Path(tmp)
        artifacts, store, shop = build_shop(tmp_path, config, categories)
        checkpoint, ckpt_info = untrained_checkpoint(artifacts, tmp_path / "checkpoint", config)
        users = bench_module("serve").sample_users(str(artifacts), 1000, config.seed)
        rows = live_rows(config, categories)
        trained_ids = [f"item-{i:07d}" for i in range(3)]
        http = serve_phases(config, checkpoint, store, users, rows, trained_ids)
    load_after = os.getloadavg()
    before, after = http["before"], http["after"]
    ratio = after["p50_ms"] / before["p50_ms"] if before["p50_ms"] and after["p50_ms"] else None
    result = {
        "command": command, "config": asdict(config),
        "weights": "untrained (random initial weights): latency does not depend on weight values",
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        "shop": {**shop, "categories": categories, "trained_items": config.trained_items, "live_items": config.live_items},
        "checkpoint": ckpt_info, **http, "after_over_before_p50": ratio,
    }
    print_report(result)
    if config.output:
        Path(config.output).parent.mkdir(parents=True, exist_ok=True)
        Path(config.output).write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {config.output}")
    return result


def fmt(s: dict) -> str:
    if not s["requests"]:
        return f"no successful requests; errors by status: {s['error_statuses']}"
    return (f"p50 {s['p50_ms']:.1f} ms  p90 {s['p90_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms  "
            f"{s['throughput_rps']:.1f} req/s  ({s['requests']} ok, {s['errors']} errors)")


def print_report(r: dict) -> None:
    c, m = r["config"], r["machine"]
    print(f"\ncommand: {r['command']}")
    print(f"weights: {r['weights']}")
    print(f"machine: {m['cpus']} CPUs; load average (1/5/15 min) before {_load(m['loadavg_before'])}, "
          f"after {_load(m['loadavg_after'])}")
    print(f"shop: {r['shop']['trained_items']:,} trained items + {r['shop']['live_items']:,} posted live "
          f"({c['live_share']:.0%} of {c['items']:,}); {r['shop']['events']:,} log events; "
          f"featurize {r['shop']['featurize_s']:.1f}s; checkpoint {r['checkpoint']['seconds']:.1f}s "
          f"({r['checkpoint']['model_pt_mib']:.0f} MiB); deploy {r['deploy_s']:.1f}s\n")
    header = f"{'/recommend, c=1':<34} {'items':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'req/s':>7} {'ok':>5} {'err':>4}"
    print(header + "\n" + "-" * len(header))
    for name, items in (("before (no live items)", r["shop"]["trained_items"]), ("after (live items replayed)", c["items"])):
        s = r[name.split()[0]]
        print(f"{name:<34} {items:>10,} {_ms(s['p50_ms'])} {_ms(s['p90_ms'])} {_ms(s['p99_ms'])} "
              f"{s['throughput_rps'] or 0:>7.1f} {s['requests']:>5} {s['errors']:>4}")
    ratio = r["after_over_before_p50"]
    print(f"after / before p50: {ratio:.2f}" if ratio else "after / before p50: n/a")
    p = r["posting"]
    print(f"POST /items: {p['items']:,} items in {p['requests']} requests of {p['batch']}: {p['seconds']:.1f}s, "
          f"{p['items_per_s']:,.0f} items/s (per request p50 {p['request_p50_ms']:.0f} ms, p99 {p['request_p99_ms']:.0f} ms)")
    print(f"catch-up: first /recommend after the posts {r['catch_up']['first_request_ms']:,.0f} ms "
          "(encoder and ranker replicas replay the item log)")
    peak = r["rss_mib_peak"]
    print(f"peak RSS of Serve processes (MiB, sampled each second): total of peaks {sum(peak.values()):,.0f}")
    for name in sorted(peak):
        print(f"  {_short(name):<40} start {r['rss_mib_start'].get(name, float('nan')):7.0f}  "
              f"peak {peak[name]:7.0f}  end {r['rss_mib_end'].get(name, float('nan')):7.0f}")
    k = r["correctness"]
    print(f"correctness ({'ok' if k['all_ok'] else 'FAILED'}): {k['checks']}")
    print(f"  posted items in the probe category's top 10: {k['new_items_in_probe_category_top10']}; "
          f"in the unfiltered top 100: {k['new_items_in_unfiltered_top100']} (untrained weights: chance)")


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _ms(value: float | None) -> str:
    return f"{value:>8.1f}" if value is not None else f"{'-':>8}"


def _short(actor_name: str) -> str:
    """SERVE_REPLICA::live#Ranker#abc -> Ranker replica abc; the controller and proxy as named."""
    if actor_name.startswith("SERVE_REPLICA::"):
        _, deployment, replica = actor_name.split("::", 1)[1].split("#")
        return f"{deployment} replica {replica}"
    return actor_name.split("-")[0]  # SERVE_PROXY_ACTOR-<node id>: one proxy per node


def parse_args(argv: list[str] | None = None) -> LiveBenchConfig:
    from seqrec_ray import cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_flags(p, LiveBenchConfig)
    args = p.parse_args(argv)
    try:
        return cli.build(LiveBenchConfig, args)
    except ValueError as exc:
        p.error(str(exc))


if __name__ == "__main__":
    run_bench(parse_args(), sys.argv[1:])
