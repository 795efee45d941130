"""Soak and faults: a bounded mixed load on the real app while replicas and the store's
writer are killed, then a check that every acknowledged event is in the store.

    python bench/soak.py                      # 10 minutes at concurrency 32 (a demo shop)
    python bench/soak.py --seconds 120 --output runs/soak

On a fresh local Ray with Serve on loopback only, every deployment with two replicas:

- ``concurrency`` clients loop over a mix of POST /recommend, POST /rank, POST /events
  (each event with a unique session id, so it can be found afterwards) and
  GET /users/{id}/profile for ``seconds``; every request is bounded by a timeout;
- at 30 % of the run one replica of each deployment is SIGKILLed (a crash, not a stop), one
  after another; at 60 % the ProfileFetcher replica that writes to SQLite (the store's
  writer process) is SIGKILLed while events are being written;
- afterwards every event the service answered 200 for is looked up in the store.

Reported (printed, JSON, PNG): requests and errors by endpoint and status, which errors
were in flight at a kill, p50/p99 per endpoint per minute, RSS of every Serve process at
start and end. Goals: no 5xx but requests in flight at a kill, RSS growth <= 10 % for the
processes alive from start to end, 0 acknowledged events lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

DEPLOYMENTS = ("Ingress", "ProfileFetcher", "UserEncoder", "Ranker", "Retriever")
APP = "soak"
MIX = (("recommend", 0.4), ("events", 0.3), ("rank", 0.15), ("profile", 0.15))


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 600.0
    concurrency: int = 32
    replicas: int = 2
    users: int = 2000
    timeout_s: float = 30.0
    kill_at: float = 0.3  # share of the run
    writer_kill_at: float = 0.6
    seed: int = 0
    output: str = "runs/soak"

    def __post_init__(self) -> None:
        if not self.seconds >= 10:
            raise ValueError(f"seconds must be >= 10, got {self.seconds!r}")
        for name in ("concurrency", "replicas", "users"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 < self.kill_at < self.writer_kill_at < 1:
            raise ValueError(f"need 0 < kill_at < writer_kill_at < 1, got {self.kill_at}, {self.writer_kill_at}")


def build_world(tmp: Path, config: SoakConfig) -> tuple[str, str, list[str], list[str]]:
    """A demo shop: featurized artifacts, a loaded SQLite store and a 1-epoch GRU."""
    from seqrec_ray.data.pipeline import featurize_in_process
    from seqrec_ray.sim.demo_shop import DemoShop
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    shop = DemoShop(users=config.users, categories=20, items_per_category=50, events_per_user=20, seed=config.seed)
    events = shop.events()
    store = f"sqlite:///{tmp / 'store.db'}"
    featurize_in_process(events, str(tmp / "artifacts"), store=store)
    train = TrainConfig(model="gru", epochs=1, max_len=20, dim=32, hidden=64, patience=0, run_name="soak", torch_threads=1)
    checkpoint = run_in_process(train, tmp / "artifacts", tmp / "run", progress=False)["best_checkpoint"]
    return checkpoint, store, sorted({e.user_id for e in events}), sorted({e.item_id for e in events})


def request_for(i: int, rng: np.random.Generator, users: list[str], items: list[str]) -> tuple[str, str, str, object]:
    """(endpoint, method, path, body) of request ``i``; events carry session id ``soak-<i>``."""
    names, weights = zip(*MIX)
    kind = names[int(rng.choice(len(names), p=weights))]
    user = users[int(rng.integers(len(users)))]
    if kind == "recommend":
        return kind, "POST", "/recommend", {"user_id": user, "k": 10}
    if kind == "rank":
        return kind, "POST", "/rank", {"user_id": user, "items": [items[int(j)] for j in rng.choice(len(items), 20, replace=False)]}
    if kind == "events":
        event = {"user_id": user, "item_id": items[int(rng.integers(len(items)))], "event_type": "view",
                 "timestamp": 1.8e9 + i, "session_id": f"soak-{i}"}
        return kind, "POST", "/events", [event]
    return kind, "GET", f"/users/{user}/profile", None


async def drive(url: str, config: SoakConfig, users: list[str], items: list[str], kills: list[dict],
                rss_samples: list[dict]) -> list[dict]:
    """The load: ``concurrency`` clients until the deadline; one record per request, and
    the RSS of every Serve process each minute into ``rss_samples``."""
    import httpx

    records: list[dict] = []
    rng = np.random.default_rng(config.seed)
    counter = iter(range(10**9))
    started = time.monotonic()
    deadline = started + config.seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            i = next(counter)
            kind, method, path, body = request_for(i, rng, users, items)
            t0 = time.monotonic()
            try:
                response = await client.request(method, path, json=body)
                status = response.status_code
            except httpx.HTTPError:
                status = 0  # no answer (connection dropped or timed out)
            records.append({"i": i, "kind": kind, "start": t0 - started, "end": time.monotonic() - started,
                            "status": status, "user": body["user_id"] if isinstance(body, dict) else
                            (body[0]["user_id"] if body else None)})

    limits = httpx.Limits(max_connections=config.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=config.timeout_s, limits=limits) as client:
        killer = asyncio.create_task(kill_schedule(config, started, kills))
        sampler = asyncio.create_task(sample_rss(started, deadline, rss_samples))
        await asyncio.gather(*(client_loop(client) for _ in range(config.concurrency)))
        await killer
        await sampler
    return records


async def sample_rss(started: float, deadline: float, samples: list[dict]) -> None:
    """RSS of every Serve process at the end of each minute of load."""
    t = started + 60.0
    while t <= deadline + 1.0:
        await asyncio.sleep(max(0.0, t - time.monotonic()))
        rss = await asyncio.to_thread(lambda: rss_mib(serve_processes()))
        samples.append({"t": round(time.monotonic() - started, 1), "rss_mib": rss})
        t += 60.0


async def kill_schedule(config: SoakConfig, started: float, kills: list[dict]) -> None:
    from seqrec_ray.serve.local import replica_names, replica_pid

    async def at(share: float) -> None:
        await asyncio.sleep(max(0.0, started + share * config.seconds - time.monotonic()))

    def kill(deployment: str, why: str) -> None:
        name = replica_names(APP, deployment)[0]
        pid = replica_pid(name)
        os.kill(pid, signal.SIGKILL)
        kills.append({"t": time.monotonic() - started, "deployment": deployment, "pid": pid, "why": why})
        print(f"  [{kills[-1]['t']:6.1f}s] SIGKILL {deployment} replica pid {pid} ({why})", flush=True)

    await at(config.kill_at)
    for deployment in DEPLOYMENTS:
        await asyncio.to_thread(kill, deployment, "one replica of each deployment")
        await asyncio.sleep(3.0)
    await at(config.writer_kill_at)
    await asyncio.to_thread(kill, "ProfileFetcher", "the SQLite store's writer")


def serve_processes() -> dict[str, int]:
    """Every Serve replica, the proxy and the controller: actor name -> pid."""
    import ray

    from seqrec_ray.serve.local import replica_pid

    out = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = actor["name"]
        if name.startswith("SERVE_"):
            try:
                out[name] = replica_pid(name, timeout_s=20)
            except Exception:  # an actor being restarted: measured next time
                continue
    return out


def rss_mib(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            out[name] = psutil.Process(pid).memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return out


def per_minute(records: list[dict]) -> dict[str, list[dict]]:
    """p50/p99 of successful requests per endpoint per minute."""
    out: dict[str, list[dict]] = {}
    for kind, _ in MIX:
        rows = [r for r in records if r["kind"] == kind and r["status"] == 200]
        minutes = sorted({int(r["start"] // 60) for r in rows})
        out[kind] = []
        for m in minutes:
            ms = np.array([(r["end"] - r["start"]) * 1000 for r in rows if int(r["start"] // 60) == m])
            out[kind].append({"minute": m, "requests": len(ms), "p50_ms": float(np.percentile(ms, 50)),
                              "p99_ms": float(np.percentile(ms, 99))})
    return out


def error_summary(records: list[dict], kills: list[dict]) -> dict:
    """Errors by endpoint and status; a 5xx (or no answer) counts as at a kill when the
    request was in flight at one (started before and ended after it)."""
    by_status: dict[str, dict[str, int]] = {}
    at_kill = unexplained = 0
    for r in records:
        by_status.setdefault(r["kind"], {}).setdefault(str(r["status"]), 0)
        by_status[r["kind"]][str(r["status"])] += 1
        if r["status"] >= 500 or r["status"] == 0:
            if any(r["start"] <= k["t"] <= r["end"] for k in kills):
                at_kill += 1
            else:
                unexplained += 1
    return {"by_endpoint_status": by_status, "server_errors_in_flight_at_a_kill": at_kill,
            "server_errors_otherwise": unexplained}


def check_events(store_url: str, records: list[dict]) -> dict:
    """Every acknowledged event (200 on /events) must be in the store."""
    from seqrec_ray.store import open_store

    acked = [r for r in records if r["kind"] == "events" and r["status"] == 200]
    missing = 0
    with open_store(store_url) as store:
        by_user: dict[str, set[str]] = {}
        for r in acked:
            by_user.setdefault(r["user"], set()).add(f"soak-{r['i']}")
        for user, sessions in by_user.items():
            have = {e.session_id for e in store.get_history(user, 1_000_000)}
            missing += len(sessions - have)
    return {"acknowledged": len(acked), "missing": missing}


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for kind, rows in result["latency_per_minute"].items():
        minutes = [r["minute"] for r in rows]
        axes[0].plot(minutes, [r["p50_ms"] for r in rows], marker="o", label=kind)
        axes[1].plot(minutes, [r["p99_ms"] for r in rows], marker="o", label=kind)
    for ax, title in zip(axes, ("p50", "p99")):
        for k in result["kills"]:
            ax.axvline(k["t"] / 60, color="grey", lw=0.8, ls="--")
        ax.set(title=f"{title} latency per minute (dashed: kills)", xlabel="minute", ylabel="ms")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_soak(config: SoakConfig) -> dict:
    import ray

    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.serve.config import ServeConfig
    from seqrec_ray.serve.local import local_serve

    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        print("building the demo shop and a 1-epoch checkpoint ...", flush=True)
        checkpoint, store, users, items = build_world(Path(tmp), config)
        init_ray(address="local", num_cpus=4, log_to_driver=False)
        try:
            with local_serve() as server:
                serve_config = ServeConfig(checkpoint=checkpoint, store=store)
                url = server.run(_replicated_app(serve_config, config.replicas), APP)
                rss_start = rss_mib(serve_processes())
                kills: list[dict] = []
                rss_samples: list[dict] = []
                print(f"soak: {config.concurrency} clients for {config.seconds:.0f} s on {url} ...", flush=True)
                records = asyncio.run(drive(url, config, users, items, kills, rss_samples))
                rss_end = rss_mib(serve_processes())
                events = check_events(store, records)
        finally:
            ray.shutdown()
    survivors = sorted(set(rss_start) & set(rss_end))
    growth = {n: rss_end[n] / rss_start[n] - 1 for n in survivors}
    # From the end of the first minute: what the first requests allocate (warm-up) apart.
    warm = rss_samples[0]["rss_mib"] if rss_samples else rss_start
    warm_growth = {n: rss_end[n] / warm[n] - 1 for n in survivors if n in warm}
    result = {
        "config": asdict(config), "requests": len(records), "kills": kills,
        "errors": error_summary(records, kills), "latency_per_minute": per_minute(records),
        "rss_mib_start": rss_start, "rss_mib_end": rss_end,
        "rss_growth_survivors": growth, "rss_growth_survivors_after_minute_1": warm_growth,
        "rss_mib_per_minute": rss_samples, "events": events,
    }
    result["goals"] = {
        "no_5xx_but_in_flight_at_kill": result["errors"]["server_errors_otherwise"] == 0,
        "rss_growth_le_10pct": bool(growth) and max(growth.values()) <= 0.10,
        "rss_growth_after_minute_1_le_10pct": bool(warm_growth) and max(warm_growth.values()) <= 0.10,
        "no_acknowledged_event_lost": events["missing"] == 0,
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "soak.png")
    print_report(result, out)
    return result


def _replicated_app(config, replicas: int):
    """The app graph with ``replicas`` replicas of every deployment."""
    from seqrec_ray.serve.encoder import UserEncoder
    from seqrec_ray.serve.ingress import Ingress
    from seqrec_ray.serve.profile_fetcher import ProfileFetcher
    from seqrec_ray.serve.ranker import Ranker
    from seqrec_ray.serve.retriever import Retriever

    def n(deployment):
        return deployment.options(num_replicas=replicas)

    return n(Ingress).bind(n(ProfileFetcher).bind(config), n(UserEncoder).bind(config), n(Ranker).bind(config),
                           n(Retriever).bind(config), config)


def print_report(result: dict, out: Path) -> None:
    print(f"\n{result['requests']} requests; kills at " + ", ".join(f"{k['t']:.0f}s {k['deployment']}" for k in result["kills"]))
    for kind, statuses in result["errors"]["by_endpoint_status"].items():
        print(f"  {kind:<10} " + "  ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    e = result["errors"]
    print(f"  5xx / no answer in flight at a kill: {e['server_errors_in_flight_at_a_kill']}; otherwise: {e['server_errors_otherwise']}")
    for kind, rows in result["latency_per_minute"].items():
        print(f"  {kind:<10} p50/p99 ms per minute: " + "  ".join(f"{r['p50_ms']:.0f}/{r['p99_ms']:.0f}" for r in rows))
    total_start, total_end = sum(result["rss_mib_start"].values()), sum(result["rss_mib_end"].values())
    worst = max(result["rss_growth_survivors"].items(), key=lambda kv: kv[1], default=(None, 0.0))
    print(f"  RSS of Serve processes: {total_start:.0f} MiB at start, {total_end:.0f} MiB at end; "
          f"largest growth of a survivor {worst[1] * 100:+.1f}% ({worst[0]})")
    for name in sorted(result["rss_growth_survivors"]):
        per_minute_mib = [s["rss_mib"].get(name) for s in result["rss_mib_per_minute"]]
        print(f"    {name[:48]:<48} start {result['rss_mib_start'][name]:6.1f}  per minute "
              + " ".join("-" if v is None else f"{v:.0f}" for v in per_minute_mib)
              + f"  (after minute 1: {result['rss_growth_survivors_after_minute_1'].get(name, float('nan')) * 100:+.1f}%)")
    print(f"  events acknowledged {result['events']['acknowledged']}, missing from the store {result['events']['missing']}")
    print(f"  goals: {result['goals']}\n  wrote {out / 'soak.json'} and {out / 'soak.png'}")


def parse_args(argv: list[str] | None = None) -> SoakConfig:
    from seqrec_ray import cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_flags(p, SoakConfig)
    args = p.parse_args(argv)
    try:
        return cli.build(SoakConfig, args)
    except ValueError as exc:
        p.error(str(exc))


if __name__ == "__main__":
    run_soak(parse_args())
