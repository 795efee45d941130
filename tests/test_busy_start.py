"""The service starts on a machine whose every core is busy.

With both cores of a 2-core box saturated (two training jobs), Serve's HTTP proxy missed
its 5 s readiness check three times and ``serve.start`` died with ActorDiedError. The
launch path (seqrec_ray.serve.local) now gives the proxy 60 s; this test starts the real
demo job (a fresh local Ray, Serve, the app, real HTTP requests) while one busy-looping
process per core runs beside it through Ray's start and ``serve.start`` (the proxy's
readiness checks, which is what failed); the burners stop once the demo says it is
deploying the app, so the suite does not pay for a whole loaded deploy (about 4 min).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, shop_artifacts

from seqrec_ray.serve.local import free_port
from seqrec_ray.sim.demo_shop import DemoShop

pytestmark = pytest.mark.slow


def _train_tiny(artifacts, out) -> str:
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    config = TrainConfig(model="gru", dim=16, hidden=32, epochs=1, batch_size=32, max_len=10, patience=0,
                         eval_batch_size=64, run_name="busy", torch_threads=1)
    return run_in_process(config, artifacts, out, progress=False)["best_checkpoint"]


def test_serve_demo_starts_and_answers_while_every_core_is_busy(tmp_path):
    artifacts, store = shop_artifacts(tmp_path, DemoShop(users=60))
    checkpoint = _train_tiny(artifacts, tmp_path / "run")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    demo = subprocess.Popen(
        [sys.executable, "jobs/serve_demo.py", "--checkpoint", checkpoint, "--store", store,
         "--artifacts", str(artifacts), "--port", str(free_port())],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    try:
        for line in demo.stdout:  # the cores stay busy until Serve and its proxy are up
            lines.append(line)
            if line.startswith("[serve] deploying"):
                break
    finally:
        for burner in burners:  # only the processes this test started, by their handle
            burner.kill()
            burner.wait()
    try:
        rest, _ = demo.communicate(timeout=600)
    finally:
        if demo.poll() is None:
            demo.kill()
    output = "".join(lines) + (rest or "")
    assert demo.returncode == 0, output[-5000:]
    assert "[serve] ready in" in output and "# HTTP 200" in output
    assert "top-5" in output  # the demo's last step: recommendations after real-time events
