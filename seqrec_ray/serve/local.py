"""Start Ray Serve locally on a loopback port and run apps on it: the one way jobs,
benchmarks and tests do it (public Serve API only).

    with local_serve() as server:          # Serve's HTTP proxy on a free loopback port
        url = server.run(app, "seqrec")    # http://127.0.0.1:PORT
        ...
                                           # leaving the block shuts Serve down

Whoever enters ``local_serve`` owns Serve for that block: it is started there with these
HTTP options and shut down on exit, so its port is always the one asked for. Needs a
running Ray (``seqrec_ray.ray_env.init_ray``).

Serve's controller gives each HTTP proxy 5 s to report ready and fails the start after
three misses. On a 2-core machine whose cores are busy (two training jobs) the proxy
missed it every time and ``serve.start`` died with ActorDiedError; with 60 s it started.
``PROXY_TIMEOUTS`` (the one place these values live; serve_configs/*.yaml repeat them under
``controller_options`` and a test checks they agree) go to the controller's environment;
values already set in this process's environment win.

``serve.start`` itself waits a fixed 60 s for the proxy (Ray's ``HTTP_PROXY_TIMEOUT``, not
configurable) and then raises TimeoutError while the controller and proxy it started go on
starting. In CI, with both cores busy, the proxy once took longer than that. So
``start_serve`` then connects to the controller already started and polls the proxies'
status (``serve.status().proxies``) for up to ``PROXY_START_S`` in all before giving up.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
PROXY_TIMEOUTS = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",
}

PROXY_START_S = 300.0


def controller_options() -> dict:
    """``serve.start(controller_options=...)`` that lets the proxy start on a busy machine."""
    return {"runtime_env": {"env_vars": {name: os.environ.get(name, value) for name, value in PROXY_TIMEOUTS.items()}}}


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on at the moment of asking."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LocalServe:
    """A running local Serve instance's HTTP address."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self, app, name: str, route_prefix: str = "/") -> str:
        """Deploy ``app`` (blocking until it is ready); returns the base URL of its routes."""
        from ray import serve

        serve.run(app, name=name, route_prefix=route_prefix)
        return self.url + route_prefix.rstrip("/")

    def delete(self, name: str) -> None:
        from ray import serve

        serve.delete(name)


@contextmanager
def local_serve(host: str = LOOPBACK, port: int | None = None) -> Iterator[LocalServe]:
    """Serve started on ``host:port`` (a free port when None) for the block, then shut down."""
    from ray import serve

    port = port or free_port(host)
    start_serve(host, port)
    try:
        yield LocalServe(host, port)
    finally:
        serve.shutdown()


def start_serve(host: str, port: int, proxy_start_s: float = PROXY_START_S) -> None:
    """``serve.start`` on ``host:port``, waiting up to ``proxy_start_s`` for a slow proxy."""
    from ray import serve

    options = {"http_options": {"host": host, "port": port}, "controller_options": controller_options()}
    started = time.monotonic()
    try:
        serve.start(**options)
        return
    except TimeoutError:  # Serve's fixed 60 s; the proxy it started is still coming up
        pass
    serve.start(**options)  # connects to the controller the first call started
    deadline = started + proxy_start_s
    while not _proxies_healthy():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve's HTTP proxy on {host}:{port} not healthy after {proxy_start_s:.0f}s")
        time.sleep(1.0)


def _proxies_healthy() -> bool:
    from ray import serve
    from ray.serve.schema import ProxyStatus

    proxies = serve.status().proxies
    return bool(proxies) and all(status == ProxyStatus.HEALTHY for status in proxies.values())


def replica_names(app: str, deployment: str) -> list[str]:
    """Names of the running replica actors of ``app``'s ``deployment``, sorted."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def replica_pid(name: str, timeout_s: float = 60.0) -> int:
    """The OS process id of a replica actor (for killing it, or reading its memory)."""
    import ray

    handle = ray.get_actor(name, namespace="serve")
    return ray.get(handle.__ray_call__.remote(lambda _replica: os.getpid()), timeout=timeout_s)
