"""Serve the console from inside `vericam gateway run`: uvicorn in a thread, on 127.0.0.1 by default.

Client addresses are the TCP peer's unless trusted proxies are named: the login rate limit and
the audit record of a failed login count per address, so a header the client writes must not
choose it. uvicorn on its own believes `X-Forwarded-For` from 127.0.0.1; here proxy headers
are off unless `trusted_proxies` lists the networks of the reverse proxies in front (and then
only a request from one of those may name the client).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import threading
import time
from pathlib import Path

import uvicorn

SECRET_FILE = "console.secret"


def load_secret(data_dir: Path) -> str:
    """The console's signing secret, created once per data directory (mode 0600)."""
    path = Path(data_dir) / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def trusted_networks(cidrs: list[str] | None) -> list[str]:
    """The reverse proxies' networks, checked and written out (`10.0.0.5` becomes `10.0.0.5/32`).

    Raises ValueError naming the bad entry. `*` is refused: it would let anyone name the client."""
    nets = []
    for cidr in cidrs or ():
        try:
            nets.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"--trusted-proxy {cidr!r} is not an address or network (such as 10.0.0.5 or "
                             f"10.0.0.0/24)") from None
    return nets


class ConsoleServer:
    """uvicorn running `create_app(data_dir)` in a daemon thread; `stop()` shuts it down."""

    def __init__(self, data_dir: str | Path, host: str = "127.0.0.1", port: int = 8080,
                 secure_cookies: bool = True, log_level: str = "warning",
                 trusted_proxies: list[str] | None = None):
        from gateway.console.app import create_app

        proxies = trusted_networks(trusted_proxies)
        self.app = create_app(data_dir, load_secret(Path(data_dir)), secure_cookies=secure_cookies)
        # access_log off: URLs name alarms and images, and the audit trail already records every view.
        config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level, access_log=False,
                                server_header=False, lifespan="off",
                                proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="vericam-console", daemon=True)
        self.host, self.port = host, port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.bound_port}/"

    @property
    def bound_port(self) -> int:
        servers = getattr(self.server, "servers", None) or []
        for s in servers:
            for sock in s.sockets:
                return sock.getsockname()[1]
        return self.port

    def start(self, timeout: float = 10.0) -> "ConsoleServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConnectionError(f"the console could not listen on {self.host}:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.app.state.store.close()
