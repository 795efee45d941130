"""Write organic logs as sharded Parquet over Ray tasks, with the ground truth beside them.

Layout (docs/contracts.md §5):

    DIR/part-00000.parquet ...             EVENT_SCHEMA rows, sorted by user then time
    DIR/ground_truth/sim.json               SimConfig, OrganicConfig, counts (reload: load_world)
    DIR/ground_truth/items.parquet          hidden item parameters: category, price, popularity, embedding, ...
    DIR/ground_truth/categories.parquet     name (the search query), complement category, consumable
    DIR/ground_truth/users/part-*.parquet   each user's true preference parameters
    DIR.items.parquet                       the shop's product catalogue (CATALOGUE_SCHEMA: title,
                                            brand, category, price, attributes), what a model may read

The catalogue sits beside DIR, not in it: featurize reads every Parquet file in DIR as
events. ``--items-output`` puts it elsewhere.

Shards are contiguous runs of fixed user blocks, so the rows do not depend on the shard
count or on which worker ran what (each block has its own seed).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqrec_ray import schema as S
from seqrec_ray.sim.catalogue import catalogue_table
from seqrec_ray.sim.organic import OrganicConfig, simulate_block
from seqrec_ray.sim.world import SimConfig, Users, World

GROUND_TRUTH = "ground_truth"
LOGS_VERSION = 1
ITEMS_SUFFIX = ".items.parquet"


def default_items_output(output: str) -> str:
    """Where the catalogue goes by default: ``runs/logs`` -> ``runs/logs.items.parquet``."""
    return os.path.normpath(output) + ITEMS_SUFFIX


@dataclass(frozen=True)
class SimulateConfig:
    output: str = field(metadata={"help": "directory for part-*.parquet and ground_truth/"})
    organic: OrganicConfig
    sim: SimConfig = field(default_factory=SimConfig)
    shards: int = field(default=0, metadata={"help": "Parquet parts = Ray tasks; 0 = automatic (one per user block, at most 64)"})
    overwrite: bool = field(default=False, metadata={"help": "replace logs (and the catalogue) already there"})
    items_output: str | None = field(default=None, metadata={
        "help": "Parquet file for the product catalogue (title, brand, category, price, attributes); "
                f"default: OUTPUT{ITEMS_SUFFIX}, beside the logs directory"})

    def __post_init__(self) -> None:
        if not self.output:
            raise ValueError("SimulateConfig.output must be a directory path, got an empty string")
        if self.items_output is None:
            object.__setattr__(self, "items_output", default_items_output(self.output))
        elif not self.items_output:
            raise ValueError("SimulateConfig.items_output must be a file path, got an empty string")
        items = os.path.abspath(self.items_output)
        if items == os.path.abspath(self.output) or os.path.dirname(items) == os.path.abspath(self.output):
            raise ValueError(f"SimulateConfig.items_output={self.items_output!r} must not be in the logs directory "
                             f"{self.output!r}: featurize reads every Parquet file there as events")
        if self.shards < 0:
            raise ValueError(f"SimulateConfig.shards must be >= 0 (0 = automatic), got {self.shards}")

    def shard_blocks(self) -> list[list[int]]:
        blocks = self.organic.blocks(self.sim.user_block)
        n = min(blocks, self.shards or 64)
        return [part.tolist() for part in np.array_split(np.arange(blocks), n)]


def write_shard(sim: SimConfig, organic: OrganicConfig, output: str, shard: int, blocks: list[int]) -> dict:
    """One Ray task: simulate ``blocks``, write the shard's events and its users' ground truth."""
    start = time.perf_counter()
    world = World(sim)
    events = pa.concat_tables([simulate_block(world, organic, b) for b in blocks])
    pq.write_table(events, os.path.join(output, f"part-{shard:05d}.parquet"))
    lo = blocks[0] * sim.user_block
    hi = min(organic.users, (blocks[-1] + 1) * sim.user_block)
    users = world.users(np.arange(lo, hi))
    pq.write_table(users_table(users, lo, world), os.path.join(output, GROUND_TRUTH, "users", f"part-{shard:05d}.parquet"))
    counts = pc.value_counts(events[S.EVENT_TYPE]).to_pylist()
    return {"shard": shard, "events": events.num_rows, "seconds": time.perf_counter() - start,
            "event_types": {c["values"]: c["counts"] for c in counts}}


def run_simulation(cfg: SimulateConfig, log: Callable[[str], None] = print) -> dict:
    """Generate every shard as a Ray task (Ray must be initialised); returns the summary in sim.json."""
    import ray

    _prepare_output(cfg)
    world = World(cfg.sim)
    write_catalogue(world, os.path.join(cfg.output, GROUND_TRUTH))
    pq.write_table(catalogue_table(world), cfg.items_output)
    shards = cfg.shard_blocks()
    task = ray.remote(num_cpus=1)(write_shard)
    pending = [task.remote(cfg.sim, cfg.organic, cfg.output, i, blocks) for i, blocks in enumerate(shards)]
    start, done, events = time.perf_counter(), [], 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        result = ray.get(ready[0])
        done.append(result)
        events += result["events"]
        elapsed = time.perf_counter() - start
        log(f"[{len(done)}/{len(shards)}] shard {result['shard']}: {result['events']:,} events in "
            f"{result['seconds']:.1f}s | total {events:,} events, {elapsed:.1f}s, {events / elapsed:,.0f} events/s")
    seconds = time.perf_counter() - start
    summary = {
        "logs_version": LOGS_VERSION, "schema_version": S.SCHEMA_VERSION,
        "sim": cfg.sim.to_dict(), "organic": asdict(cfg.organic), "shards": len(shards),
        "events": events, "users": cfg.organic.users, "items": world.catalogue.n_items,
        "categories": len(world.catalogue.cat_names), "items_output": cfg.items_output, "start_time": cfg.sim.start_time,
        "end_time": cfg.sim.start_time + cfg.organic.days * S.SECONDS_PER_DAY,
        "event_types": _sum_counts(r["event_types"] for r in done),
        "seconds": seconds, "events_per_second": events / max(seconds, 1e-9),
    }
    with open(os.path.join(cfg.output, GROUND_TRUTH, "sim.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def load_world(output: str) -> tuple[World, dict]:
    """The World that generated the logs in ``output`` (rebuilt from its seed) and sim.json."""
    path = os.path.join(output, GROUND_TRUTH, "sim.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no simulator ground truth at {path!r}")
    with open(path) as f:
        summary = json.load(f)
    return World(SimConfig(**summary["sim"])), summary


def _prepare_output(cfg: SimulateConfig) -> None:
    old = glob.glob(os.path.join(cfg.output, "part-*.parquet"))
    truth = os.path.join(cfg.output, GROUND_TRUTH)
    if (old or os.path.exists(truth)) and not cfg.overwrite:
        raise FileExistsError(f"{cfg.output!r} already holds simulated logs; choose another directory or overwrite")
    if os.path.exists(cfg.items_output) and not cfg.overwrite:
        raise FileExistsError(f"the catalogue {cfg.items_output!r} already exists; choose another --items-output or overwrite")
    for path in old:
        os.remove(path)
    shutil.rmtree(truth, ignore_errors=True)
    os.makedirs(os.path.join(truth, "users"), exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(cfg.items_output)), exist_ok=True)


def _sum_counts(parts) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in parts:
        for name, n in counts.items():
            total[name] = total.get(name, 0) + n
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


def _fixed_lists(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def users_table(users: Users, first: int, world: World) -> pa.Table:
    """Ground truth per user: taste (d), drift per 30 days (d), category affinity (n_categories), ..."""
    n = len(users)
    return pa.table({
        S.USER_ID: pa.array([World.user_id(i) for i in range(first, first + n)]),
        "index": pa.array(np.arange(first, first + n)),
        "taste": _fixed_lists(users.taste),
        "drift_per_30_days": _fixed_lists(users.drift),
        "category_affinity": _fixed_lists(np.exp(users.log_affinity)),
        "sessions_per_day": pa.array(users.session_rate),
        "budget": pa.array(users.budget),
        "search_prob": pa.array(users.search_prob),
    })


def write_catalogue(world: World, directory: str) -> None:
    cat = world.catalogue
    ids = np.array(cat.item_ids, dtype=object)
    items = pa.table({
        S.ITEM_ID: pa.array(cat.item_ids),
        "index": pa.array(np.arange(cat.n_items)),
        S.CATEGORY_ID: pa.array([f"c{c}" for c in cat.category]),
        S.PRICE: pa.array(cat.price),
        "log_popularity": pa.array(cat.log_pop),
        "repurchase_cycle_days": pa.array(cat.cycle_days),
        "embedding": _fixed_lists(cat.emb),
        "substitutes": pa.array(ids[cat.substitutes].tolist(), pa.list_(pa.string())),
        "complements": pa.array(ids[cat.complements].tolist(), pa.list_(pa.string())),
    })
    n_cat = len(cat.cat_names)
    categories = pa.table({
        S.CATEGORY_ID: pa.array(cat.category_ids),
        "index": pa.array(np.arange(n_cat)),
        "name": pa.array(list(cat.cat_names)),
        "complement_category_id": pa.array([f"c{c}" for c in cat.complement_category]),
        "consumable": pa.array([bool(cat.cycle_days[cat.cat_start[c]] > 0) for c in range(n_cat)]),
        "popularity_share": pa.array(cat.cat_pop),
        "items": pa.array(np.diff(cat.cat_start)),
    })
    pq.write_table(items, os.path.join(directory, "items.parquet"))
    pq.write_table(categories, os.path.join(directory, "categories.parquet"))
