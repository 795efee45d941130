"""Shared fixtures: one local Ray instance per test session, and the real datasets."""

from __future__ import annotations

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

    if not ray.is_initialized():
        # address="local": always a fresh instance, never a cluster some other process started.
        ray.init(
            address="local",
            num_cpus=4,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        )
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # serve may never have started
        pass
    ray.shutdown()
