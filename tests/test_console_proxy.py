"""Who is the client? The console's login limit and its audit of failed logins count per address,
so that address must be the TCP peer's unless a trusted reverse proxy names the client.

These run the real `vericam gateway console` (uvicorn) on a free loopback port. uvicorn on its
own believes X-Forwarded-For from 127.0.0.1, which would let anyone on the machine, or anything
forwarding to it blindly, pick a fresh address for every guess."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from gateway.governance import audit
from gateway.governance.users import add_user
from gateway.provisioning.devices import init_arc
from gateway.storage.store import Store
from simulator.broker import free_port

from support.cli import VERICAM, vericam

MAX_FAILURES = 5  # gateway/console/auth.py


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "gw"
    init_arc(d)
    with Store.open(d) as store:
        add_user(store, "olivia", "operator", "operator-pass-1", "test-setup", int(time.time() * 1000))
    return d


class Console:
    """`vericam gateway console` in a child process, stopped on exit."""

    def __init__(self, data: Path, *options: str):
        self.port = free_port()
        self.proc = subprocess.Popen([VERICAM, "gateway", "console", "--data", str(data), "--port", str(self.port),
                                      "--http-cookies", *options], stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert "operator console on" in line, line + self.proc.stderr.read()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def login(self, name: str, password: str, forwarded_for: str | None = None) -> int:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return self.http.post("/api/session", json={"name": name, "password": password},
                              headers=headers).status_code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.http.close()
        self.proc.terminate()
        self.proc.communicate(timeout=20)


def failed_login_clients(data: Path) -> list[str]:
    with Store.open(data) as store:
        return [r["detail"]["client"] for r in audit.records(store, what="login failed")]


def test_a_forged_forwarded_for_header_does_not_escape_the_per_address_login_limit(data):
    # Password spraying: a new user name and a new claimed address for every guess, so that
    # neither the per-name nor (if the header were believed) the per-address count ever fills.
    with Console(data) as console:
        codes = [console.login(f"user{i}", "guess", forwarded_for=f"203.0.113.{i}, 198.51.100.{i}")
                 for i in range(MAX_FAILURES + 1)]
        assert codes == [401] * MAX_FAILURES + [429], "a forged X-Forwarded-For reset the per-address limit"
        # even the right password, from a "new" address, waits out the limit
        assert console.login("olivia", "operator-pass-1", forwarded_for="192.0.2.77") == 429
    assert failed_login_clients(data) == ["127.0.0.1"] * MAX_FAILURES, "the audit recorded a client-chosen address"


def test_a_trusted_proxy_names_the_client(data):
    with Console(data, "--trusted-proxy", "127.0.0.1/32") as console:
        # Each client behind the proxy has its own count...
        codes = [console.login(f"user{i}", "guess", forwarded_for=f"203.0.113.{i}")
                 for i in range(MAX_FAILURES + 1)]
        assert codes == [401] * (MAX_FAILURES + 1)
        # ...and one client's failures fill its own.
        codes = [console.login(f"other{i}", "guess", forwarded_for="198.51.100.9")
                 for i in range(MAX_FAILURES + 1)]
        assert codes == [401] * MAX_FAILURES + [429]
        assert console.login("olivia", "operator-pass-1", forwarded_for="192.0.2.77") == 200
    assert failed_login_clients(data) == ([f"203.0.113.{i}" for i in range(MAX_FAILURES + 1)]
                                          + ["198.51.100.9"] * MAX_FAILURES)


def test_a_proxy_that_is_not_trusted_cannot_name_the_client(data):
    # Only the listed networks are believed: 127.0.0.1 is not in 10.0.0.0/8.
    with Console(data, "--trusted-proxy", "10.0.0.0/8") as console:
        for i in range(MAX_FAILURES):
            assert console.login(f"user{i}", "guess", forwarded_for=f"10.1.2.{i}") == 401
        assert console.login("user-next", "guess", forwarded_for="10.9.9.9") == 429
    assert failed_login_clients(data) == ["127.0.0.1"] * MAX_FAILURES


@pytest.mark.parametrize("command", ["console", "run"])
def test_a_trusted_proxy_must_be_an_address_or_a_network(data, command):
    for bad in ("*", "proxy.example.net", "10.0.0.0/33"):
        r = vericam("gateway", command, "--data", data, "--trusted-proxy", "127.0.0.1", "--trusted-proxy", bad)
        assert r.returncode == 2 and f"--trusted-proxy {bad!r}" in r.stderr, r.stderr
