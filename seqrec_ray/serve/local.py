"""Start Ray Serve locally on a loopback port and run apps on it: the one way jobs,
benchmarks and tests do it (public Serve API only).

    with local_serve() as server:          # Serve's HTTP proxy on a free loopback port
        url = server.run(app, "seqrec")    # http://127.0.0.1:PORT
        ...
                                           # leaving the block shuts Serve down

Whoever enters ``local_serve`` owns Serve for that block: it is started there with these
HTTP options and shut down on exit, so its port is always the one asked for. Needs a
running Ray (``seqrec_ray.ray_env.init_ray``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


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
    serve.start(http_options={"host": host, "port": port})
    try:
        yield LocalServe(host, port)
    finally:
        serve.shutdown()
