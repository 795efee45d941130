"""Featurize benchmark: the Ray Data pipeline against a single-process pyarrow baseline
doing the same work, on the same generated log, in the same run.

    python bench/featurize.py                  # 10M events, 2 CPUs
    python bench/featurize.py --events 1000000

The log is the real Taobao sample tiled with per-tile id offsets (every tile's users are
new users; items cycle through 16 offsets so the item vocabulary grows too), written as
sharded `events` Parquet in a temporary directory. Both runs do: read, validate, sort by
user and time, dedupe, sessionize, profiles, vocab, encode sequences, write Parquet.
Prints both rates (events/s), their ratio and peak memory (RSS, sampled).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "taobao-userbehavior"
ITEM_TILES = 16


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--files", type=int, default=20, help="Parquet shards of the generated log")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--num-buckets", type=int, help="default: the pipeline's choice")
    p.add_argument("--sample", default=str(DEFAULT_SAMPLE), help="Taobao sample to tile")
    p.add_argument("--workdir", help="where to write (default: a temp dir, removed after)")
    p.add_argument("--skip-baseline", action="store_true")
    args = p.parse_args(argv)
    if args.events < 1 or args.files < 1 or args.num_cpus < 1:
        p.error("--events, --files and --num-cpus must be >= 1")
    return args


def generate(sample: str, n_events: int, n_files: int, out_dir: str) -> list[str]:
    """Tile the sample to ``n_events`` rows in ``n_files`` Parquet shards."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from seqrec_ray import schema as S
    from seqrec_ray.data import readers

    base = readers.read_events(sample, "taobao").select(
        [S.USER_ID, S.ITEM_ID, S.EVENT_TYPE, S.TIMESTAMP, S.CATEGORY_ID])
    tiles = -(-n_events // base.num_rows)
    per_file = -(-tiles // n_files)
    os.makedirs(out_dir, exist_ok=True)
    paths, written = [], 0
    for f in range(n_files):
        parts = []
        for t in range(f * per_file, min((f + 1) * per_file, tiles)):
            rows = min(base.num_rows, n_events - written)
            if rows <= 0:
                break
            tile = base.slice(0, rows)
            user = pc.binary_join_element_wise(tile[S.USER_ID], pa.scalar(f"t{t}"), "-")
            item_tag = pa.scalar(f"k{t % ITEM_TILES}")
            item = pc.binary_join_element_wise(tile[S.ITEM_ID], item_tag, "-")
            parts.append(tile.set_column(0, S.USER_ID, user).set_column(1, S.ITEM_ID, item))
            written += rows
        if parts:
            path = os.path.join(out_dir, f"part-{f:04d}.parquet")
            pq.write_table(pa.concat_tables(parts), path)
            paths.append(path)
    assert written == n_events, (written, n_events)
    return paths


def _rss_bytes(pid: int) -> int:
    """Resident set size of a process from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(roots: list[int]) -> list[int]:
    """roots and every process below them, from /proc/*/stat parent ids."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


class PeakRss:
    """Samples the summed RSS of this process and the processes ``pids()`` names."""

    def __init__(self, pids=lambda: []):
        self._pids, self.peak = pids, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            total = _rss_bytes(os.getpid()) + sum(_rss_bytes(p) for p in self._pids())
            self.peak = max(self.peak, total)
            self._stop.wait(0.25)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def baseline(files: list[str], out_dir: str) -> dict:
    """Single process, whole log in memory: the same stages, no buckets, no Ray."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from seqrec_ray import schema as S
    from seqrec_ray.data import events as E
    from seqrec_ray.data import readers
    from seqrec_ray.data import sequences as Q
    from seqrec_ray.data import vocab as V
    from seqrec_ray.data.profiles import ProfileConfig, build_profiles
    from seqrec_ray.data.validate import ValidateConfig, validate

    kept_parts, rows_read, order = [], 0, 0
    for i, path in enumerate(files):
        for batch in readers.iter_file_batches(path, "events"):
            keys = E.order_keys(i, order, batch.num_rows)
            kept, _ = validate(batch.append_column(E.ORDER, keys), ValidateConfig())
            kept_parts.append(kept)
            rows_read, order = rows_read + batch.num_rows, order + batch.num_rows
        order = 0
    events, duplicates = E.drop_duplicates(E.sort_events(pa.concat_tables(kept_parts)))
    del kept_parts
    events = E.sessionize(events, 1800.0)
    reference = pc.max(events[S.TIMESTAMP]).as_py()
    os.makedirs(out_dir, exist_ok=True)
    pq.write_table(build_profiles(events, reference, ProfileConfig()),
                   os.path.join(out_dir, "profiles.parquet"))
    raw = Q.build_raw_sequences(events, Q.SequenceConfig())
    items, cats = V.build_vocabs(V.count_pairs(events), V.VocabConfig())
    pq.write_table(Q.encode_sequences(raw, items, cats), os.path.join(out_dir, "sequences.parquet"))
    return {"rows_read": rows_read, "rows_kept": events.num_rows, "rows_duplicate": duplicates,
            "users": raw.num_rows}


def ray_node_pids() -> list[int]:
    """The processes of the Ray node this driver started (not other Ray instances here)."""
    import ray

    node = ray._private.worker._global_node
    roots = [info.process.pid for infos in node.all_processes.values() for info in infos]
    return [p for p in _descendants(roots) if p != os.getpid()]


def run_ray(files_dir: str, out_dir: str, args) -> dict:
    import ray

    from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize
    from seqrec_ray.ray_env import init_ray

    start = time.perf_counter()
    # address="local": a fresh instance even when another Ray runs on this machine.
    init_ray("local", args.num_cpus, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        config = FeaturizeConfig(input=files_dir, format="events", output=out_dir,
                                 num_buckets=args.num_buckets)
        with PeakRss(ray_node_pids) as rss:
            start = time.perf_counter()
            manifest = run_featurize(config, log=lambda line: print(line, file=sys.stderr))
            seconds = time.perf_counter() - start
    finally:
        ray.shutdown()
    return {"seconds": seconds, "ray_init_s": init_s, "peak_rss": rss.peak,
            "manifest": manifest}


def main(argv=None) -> int:
    args = parse_args(argv)
    work = args.workdir or tempfile.mkdtemp(prefix="featurize-bench-")
    try:
        start = time.perf_counter()
        files = generate(args.sample, args.events, args.files, os.path.join(work, "log"))
        print(f"generated {args.events:,} events in {len(files)} files in "
              f"{time.perf_counter() - start:.1f}s", file=sys.stderr)
        result = {"events": args.events, "files": len(files), "num_cpus": args.num_cpus,
                  "load_avg_before": os.getloadavg()}
        if not args.skip_baseline:
            with PeakRss() as rss:
                start = time.perf_counter()
                counts = baseline(files, os.path.join(work, "baseline"))
                seconds = time.perf_counter() - start
            result["baseline"] = {"seconds": round(seconds, 2),
                                  "events_per_s": round(args.events / seconds),
                                  "peak_rss_gib": round(rss.peak / 2**30, 2), **counts}
            print(f"baseline: {json.dumps(result['baseline'])}", file=sys.stderr)
        ray_run = run_ray(os.path.join(work, "log"), os.path.join(work, "ray"), args)
        m = ray_run["manifest"]
        result["ray"] = {"seconds": round(ray_run["seconds"], 2),
                         "ray_init_s": round(ray_run["ray_init_s"], 2),
                         "end_to_end_s": round(ray_run["seconds"] + ray_run["ray_init_s"], 2),
                         "events_per_s": round(args.events / ray_run["seconds"]),
                         "peak_rss_gib_driver_plus_workers": round(ray_run["peak_rss"] / 2**30, 2),
                         "stage_seconds": m["stage_seconds"], "num_buckets": m["num_buckets"],
                         **{k: m[k] for k in ("rows_read", "rows_kept", "rows_duplicate", "users")}}
        if "baseline" in result:
            result["ratio_ray_over_baseline"] = round(
                result["ray"]["events_per_s"] / result["baseline"]["events_per_s"], 2)
            same = all(result["ray"][k] == result["baseline"][k]
                       for k in ("rows_read", "rows_kept", "rows_duplicate", "users"))
            result["same_counts"] = same
        result["load_avg_after"] = os.getloadavg()
        print(json.dumps(result, indent=2))
        return 0
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
