"""Real job submission: a Ray head with the job server on loopback, token auth on, then
`ray job submit` featurize -> train, `serve deploy`, one request.

    python tests/cluster_scripts/job_submission.py --input FILE --format taobao --workdir DIR --result OUT.json

Writes a JSON result (what each step saw) for tests/test_cluster_jobs.py to assert on and
exits 0 when every step ran (the test judges the results). The head runs as a child in
its own session with its own temp dir, token file and free ports; it is stopped by
killing that process group, never with `ray stop` (which would stop every Ray on the box).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import yaml
from _procs import REPO_ROOT, VENV_BIN, free_ports, http, stop_process_group, wait_until

UPLOAD_EXCLUDES = [".venv", ".git", "runs", "out", "artifacts", "**/__pycache__", ".pytest_cache", "*.egg-info"]
JOB_TIMEOUT_S = 300


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--format", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--result", required=True)
    return p.parse_args()


def cluster_env(token_file: Path) -> dict:
    """Token auth on, with a token of our own (not ~/.ray/auth_token); the venv first on PATH
    so a job's `python` is the project's; no inherited address or API key."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SEQREC_API_KEY", "RAY_AUTH_TOKEN")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
               PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0")
    return env


def start_head(temp_dir: Path, env: dict, log) -> tuple[subprocess.Popen, dict]:
    names = ("gcs", "dashboard", "client", "agent_listen", "agent_grpc", "runtime_env", "metrics", "node_manager",
             "object_manager", "serve")
    ports = dict(zip(names, free_ports(len(names))))
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           f"--port={ports['gcs']}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={ports['dashboard']}", f"--ray-client-server-port={ports['client']}",
           f"--dashboard-agent-listen-port={ports['agent_listen']}", f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
           f"--runtime-env-agent-port={ports['runtime_env']}", f"--metrics-export-port={ports['metrics']}",
           f"--node-manager-port={ports['node_manager']}", f"--object-manager-port={ports['object_manager']}",
           "--num-cpus=4", f"--object-store-memory={200 * 1024 * 1024}", f"--temp-dir={temp_dir}",
           "--disable-usage-stats"]
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT)
    return head, ports


def submit(address: str, env: dict, token: str, entrypoint: list[str], log) -> dict:
    """`ray job submit --working-dir .` from the repo root; waits for the end of the job."""
    submission_id = f"seqrec-{entrypoint[1].split('/')[-1].removesuffix('.py')}-{secrets.token_hex(3)}"
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", address, "--submission-id", submission_id,
           "--working-dir", ".", "--runtime-env-json", json.dumps({"excludes": UPLOAD_EXCLUDES}), "--", *entrypoint]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=JOB_TIMEOUT_S)
    log.write(f"\n$ {' '.join(cmd)}\n{proc.stdout}\n")
    log.flush()
    code, text = http("GET", f"{address}/api/jobs/{submission_id}", headers={"Authorization": f"Bearer {token}"})
    status = json.loads(text)["status"] if code == 200 else f"HTTP {code}: {text[:200]}"
    return {"submission_id": submission_id, "cli_rc": proc.returncode, "status": status,
            "seconds": round(time.monotonic() - started, 1), "tail": proc.stdout[-3000:]}


def deploy_serve(workdir: Path, ports: dict, checkpoint: Path, store: Path, env: dict, log) -> dict:
    """serve_configs/local.yaml with the port, checkpoint and store of this run, via `serve deploy`."""
    config = yaml.safe_load((REPO_ROOT / "serve_configs" / "local.yaml").read_text())
    config["http_options"]["port"] = ports["serve"]
    app = config["applications"][0]
    app["args"].update(checkpoint=str(checkpoint), store=str(store))
    path = workdir / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    address = f"http://127.0.0.1:{ports['dashboard']}"
    proc = subprocess.run([str(VENV_BIN / "serve"), "deploy", str(path), "--address", address], env=env,
                          cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    log.write(f"\n$ serve deploy\n{proc.stdout}\n")
    url = f"http://127.0.0.1:{ports['serve']}"
    started = time.monotonic()
    wait_until(lambda: http("GET", f"{url}/healthz", timeout=10)[0] == 200, 300, "the Serve app to answer /healthz", 2)
    return {"deploy_rc": proc.returncode, "url": url, "ready_seconds": round(time.monotonic() - started, 1)}


def run(args: argparse.Namespace, workdir: Path, env: dict, ports: dict, result: dict, log) -> None:
    temp_dir, token_file = Path(result["temp_dir"]), Path(env["RAY_AUTH_TOKEN_PATH"])
    address = f"http://127.0.0.1:{ports['dashboard']}"
    wait_until(lambda: http("GET", f"{address}/api/version")[0] in (200, 401), 120, "the job server")
    result["no_token_status"] = http("GET", f"{address}/api/jobs/")[0]
    result["wrong_token_status"] = http("GET", f"{address}/api/jobs/", headers={"Authorization": "Bearer wrong"})[0]
    result["token_status"] = http("GET", f"{address}/api/jobs/",
                                  headers={"Authorization": f"Bearer {token_file.read_text()}"})[0]
    artifacts, train_out, store = workdir / "artifacts", workdir / "train", workdir / "store.db"
    jobs = {
        "featurize": ["python", "jobs/featurize.py", "--input", args.input, "--format", args.format, "--output",
                      str(artifacts), "--store", str(store), "--num-buckets", "2", "--max-seq-len", "50"],
        "train": ["python", "jobs/train.py", "--data", str(artifacts), "--output", str(train_out), "--model", "lstm",
                  "--num-workers", "1", "--epochs", "1", "--dim", "16", "--hidden", "32", "--max-len", "20",
                  "--batch-size", "64", "--patience", "0", "--torch-threads", "1", "--storage", str(workdir / "ray_results")],
    }
    result["jobs"] = {}
    for name, entrypoint in jobs.items():
        result["jobs"][name] = job = submit(address, env, token_file.read_text(), entrypoint, log)
        if job["status"] != "SUCCEEDED":
            return
    result["uploaded_working_dirs"] = [
        {"path": str(p), "bytes": sum(f.stat().st_size for f in p.rglob("*") if f.is_file()),
         "has_venv": (p / ".venv").exists(), "has_git": (p / ".git").exists()}
        for p in temp_dir.glob("session_*/runtime_resources/working_dir_files/*") if p.is_dir()
    ]
    result["serve"] = deploy_serve(workdir, ports, train_out / "best", store, env, log)
    result["paths"] = {"artifacts": str(artifacts), "checkpoint": str(train_out / "best"), "store": str(store)}
    result["recommend"] = recommend_once(result["serve"]["url"], str(artifacts), str(store))


def main() -> int:
    args = parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix="srj", dir="/tmp"))  # short: Ray puts unix sockets in it
    result: dict = {"temp_dir": str(temp_dir)}
    token_file = workdir / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    env = cluster_env(token_file)
    with open(workdir / "cluster.log", "a") as log:
        head, ports = start_head(temp_dir, env, log)
        result["head_pid"] = head.pid
        (workdir / "head.pgid").write_text(str(head.pid))  # lets the test clean up if this script is killed
        try:
            run(args, workdir, env, ports, result, log)
        except Exception:  # reported in the JSON: the test shows it
            result["error"] = traceback.format_exc()
        finally:
            result["head_left_behind"] = stop_process_group(head, [str(temp_dir)])
            shutil.rmtree(temp_dir, ignore_errors=True)
    Path(args.result).write_text(json.dumps(result, indent=2))
    return 0


def recommend_once(url: str, artifacts: str, store: str) -> dict:
    """One good request, for the user with the longest history featurize loaded into the store."""
    import pyarrow.compute as pc

    from seqrec_ray.data.artifacts import load_sequences
    from seqrec_ray.store import open_store

    sequences = load_sequences(artifacts)
    lengths = pc.list_value_length(sequences.column("items")).to_numpy()
    user = sequences.column("user_id")[int(lengths.argmax())].as_py()
    with open_store(store) as s:
        history = len(s.get_history(user, 1000))
    status, text = http("POST", f"{url}/recommend", {"user_id": user, "k": 5}, timeout=60)
    return {"user_id": user, "history_in_store": history, "status": status,
            "body": json.loads(text) if status == 200 else text}


if __name__ == "__main__":
    sys.exit(main())
