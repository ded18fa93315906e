"""Shared fixtures: a real Mosquitto with the project's config, and the MicroPython runner."""

import pytest

from simulator.broker import Broker


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free 127.0.0.1 port, shared by the session (one bucket per test)."""
    from s3server import MotoS3

    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch):
    """Credentials in the standard AWS environment variables, as an operator would give them."""
    from s3server import CREDENTIALS

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return CREDENTIALS
