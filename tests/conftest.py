"""Shared fixtures: one local Ray instance per test session, and the real datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEQREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of a real dataset in ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path} (set SEQREC_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance shared by the whole session, shut down at the end.

    Logical CPUs are oversubscribed (4 on a 2-core box) so a 2-worker Ray Train run,
    Ray Data and fractional-CPU Serve replicas can all be scheduled.
    """
    import ray

    from seqrec_ray.ray_env import init_ray

    # address="local": always a fresh instance, never a cluster some other process started.
    init_ray("local", num_cpus=4, log_to_driver=False)
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # serve may never have started
        pass
    ray.shutdown()


@pytest.fixture(scope="module")
def serve_local(ray_local):
    """Ray Serve on a free loopback port for one test module (seqrec_ray.serve.local): the
    module runs its apps with ``serve_local.run(app, name)``. Per module, not per session,
    so that Serve's controller and proxy do not keep running under every later test."""
    from seqrec_ray.serve.local import local_serve

    with local_serve() as server:
        yield server


def shop_artifacts(root: Path, shop, store: bool = True, catalogue: bool = False) -> tuple[Path, str | None]:
    """A DemoShop's events through the real featurize path (in-process) into ROOT/artifacts,
    loading ROOT/store.db too; returns (artifacts dir, store URL or None). With
    ``catalogue`` the shop's catalogue (ROOT/items.jsonl) goes in too (``--items``).

    One user bucket, so one sequences part: Ray Data reads a single file in a fixed order,
    and the tests that compare two training runs rely on both seeing the same order."""
    from seqrec_ray.data.pipeline import featurize_in_process

    url = f"sqlite:///{root / 'store.db'}" if store else None
    items = None
    if catalogue:
        items = root / "items.jsonl"
        items.write_text("".join(json.dumps(row) + "\n" for row in shop.catalogue()))
    featurize_in_process(shop.events(), str(root / "artifacts"), store=url, num_buckets=1,
                         items=None if items is None else str(items))
    return root / "artifacts", url


def s3rec_head_artifacts(src: Path, out: Path, max_users: int, items: Path | None = None) -> Path:
    """The first ``max_users`` lines of a real S3-Rec file featurized (in-process, the real
    passes) into OUT: leave-one-out splits, positional time; one sequences part, as
    ``shop_artifacts``. ``items``: an S3-Rec attribute file as the catalogue."""
    from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize

    out.mkdir(parents=True, exist_ok=True)
    head = out.parent / f"{out.name}-input" / src.name
    head.parent.mkdir(parents=True, exist_ok=True)
    head.write_text("\n".join(src.read_text().splitlines()[:max_users]) + "\n")
    config = FeaturizeConfig(input=str(head), format="s3rec", output=str(out), num_buckets=1,
                             items=None if items is None else str(items), items_format="s3rec-attributes")
    run_featurize(config, log=lambda _: None, in_process=True)
    return out
