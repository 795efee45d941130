"""Helpers the cluster scripts share: free ports, waiting on HTTP, owning a process group.

The scripts start their own Ray processes on a machine other people share, so they
clean up only what they started (their process group, and processes that name their
own unique temp dir or port) and never run `ray stop`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http(method: str, url: str, body: dict | list | None = None, headers: dict | None = None,
         timeout: float = 30.0) -> tuple[int, str]:
    """(status, text) of one request; connection errors come back as status 0."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
        return 0, str(err)


def wait_until(check, timeout_s: float, what: str, interval_s: float = 1.0):
    """Poll ``check()`` until it returns a truthy value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def processes_matching(markers: list[str], pgid: int | None = None) -> list[int]:
    """PIDs whose process group is ``pgid`` or whose command line names one of ``markers``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] == "Z":  # a zombie holds no resources; its parent reaps it
            continue
        if (pgid is not None and int(fields[2]) == pgid) or any(m in cmdline for m in markers):
            found.append(int(entry.name))
    return found


def stop_process_group(proc: subprocess.Popen, markers: list[str], grace_s: float = 10.0) -> list[int]:
    """SIGTERM the group ``proc`` leads (``ray start --block`` then stops its node), SIGKILL
    what is left after ``grace_s``; returns the PIDs still alive after that (should be none)."""
    pgid = proc.pid  # started with start_new_session=True: its pid is the group id
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + grace_s
    while processes_matching(markers, pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in processes_matching(markers, pgid):
        try:
            os.kill(pid, signal.SIGKILL)  # ours: same group or our unique temp dir / port
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    time.sleep(1.0)
    return processes_matching(markers, pgid)


def run_script(script: str, args: list[str], workdir: Path, timeout_s: float) -> dict:
    """Run tests/cluster_scripts/SCRIPT with the venv python and return its JSON result.

    The script leads a new process group and RAY_TMPDIR is a fresh short directory of this
    run (Ray's unix sockets live under it; its address file stays invisible to other Ray
    users). Afterwards every process still in that group, in a head group the script
    recorded in WORKDIR/head.pgid, or naming this run's directories is listed in the
    result's ``left_behind`` and killed, so even a timed-out script leaves nothing behind.
    """
    import shutil
    import tempfile

    workdir.mkdir(parents=True, exist_ok=True)
    ray_tmp = tempfile.mkdtemp(prefix="srt", dir="/tmp")
    result_file = workdir / "result.json"
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(REPO_ROOT / "tests" / "cluster_scripts" / script), *args, "--workdir", str(workdir),
           "--result", str(result_file)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        rc = f"a timeout after {timeout_s:.0f}s"
    finally:
        left_behind = _collect_leftovers(workdir, proc.pid, [ray_tmp, str(workdir)])
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if rc != 0 or not result_file.exists():
        raise AssertionError(f"{script} exited with {rc}:\n{output[-4000:]}")
    return {**json.loads(result_file.read_text()), "left_behind": left_behind}


def _collect_leftovers(workdir: Path, pgid: int, markers: list[str], grace_s: float = 15.0) -> list[str]:
    """Processes of the run still alive after ``grace_s`` (described), then SIGKILLed."""
    pgid_file = workdir / "head.pgid"
    groups = [pgid] + ([int(pgid_file.read_text())] if pgid_file.exists() else [])

    def alive() -> list[int]:
        return sorted({pid for group in groups for pid in processes_matching(markers, group)})

    deadline = time.monotonic() + grace_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    described = []
    for pid in alive():
        try:
            described.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}")
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass
    return described
