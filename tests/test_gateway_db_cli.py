"""`vericam gateway init/run --db`: PostgreSQL by URL, recorded for the data directory; bad input
gets one clear line, never a traceback and never the password."""

import contextlib

import pytest

from gateway.storage import sqldb
from gateway.storage.migrations import MIGRATIONS

from support.cli import vericam

SECRET = "s3cr3t-Pa55"


def assert_clean_error(proc, *words):
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out and SECRET not in out, out
    for w in words:
        assert w in out, out


def test_init_on_postgresql_records_the_url_and_other_commands_find_it(tmp_path, pg_url):
    data = tmp_path / "gw"
    proc = vericam("gateway", "init", "--data", data, "--db", pg_url)
    assert proc.returncode == 0, proc.stderr
    assert "metadata in postgresql" in proc.stdout and f"schema version {len(MIGRATIONS)}" in proc.stdout
    assert sqldb.recorded_target(data) == pg_url and not (data / "vericam.sqlite").exists()
    assert vericam("gateway", "add-device", "cam-1", "--site", "s", "--data", data,
                   "--out", tmp_path / "cam-1.json").returncode == 0
    listed = vericam("audit", "verify", "--data", data)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    again = vericam("gateway", "init", "--data", data, "--db", pg_url)  # idempotent: migrations re-run
    assert again.returncode == 0 and "kept the existing" in again.stdout
    with contextlib.closing(sqldb.connect(pg_url)) as db:
        assert db.execute("SELECT id FROM devices").fetchone()[0] == "cam-1"


@pytest.mark.parametrize("url, words", [
    ("postgresql://127.0.0.1:1/vericam", ["cannot connect", "127.0.0.1:1", "PostgreSQL is running"]),
    (f"postgresql://vc:{SECRET}@127.0.0.1:1/vericam", ["carries a password", "PGPASSWORD", "vc:***@"]),
    ("mysql://127.0.0.1/vericam", ["not supported", "postgresql://HOST:PORT/DBNAME"]),
    ("postgresql://127.0.0.1:port/vericam", ["bad port"]),
    ("postgresql://127.0.0.1:5432", ["names no database"]),
])
def test_a_bad_or_unreachable_database_gets_one_clear_line(tmp_path, url, words):
    assert_clean_error(vericam("gateway", "init", "--data", tmp_path / "gw", "--db", url), *words)
    assert not (tmp_path / "gw" / "database.toml").exists()  # nothing recorded: fix the URL and run again


def test_run_on_an_unreachable_database_exits_with_a_message_not_a_traceback(tmp_path):
    proc = vericam("gateway", "run", "--data", tmp_path / "gw", "--db", "postgresql://127.0.0.1:1/vericam",
                   "--broker", "127.0.0.1:1")
    assert_clean_error(proc, "cannot connect")


def test_a_sqlite_data_directory_is_not_silently_switched_to_postgresql(tmp_path, pg_url):
    data = tmp_path / "gw"
    assert vericam("gateway", "init", "--data", data).returncode == 0
    assert_clean_error(vericam("gateway", "init", "--data", data, "--db", pg_url), "already keeps its metadata in SQLite")


def test_an_unreachable_recorded_database_stops_other_commands_cleanly(tmp_path):
    data = tmp_path / "gw"
    data.mkdir()
    (data / "database.toml").write_text('url = "postgresql://127.0.0.1:1/vericam"\n')  # the server went away
    assert_clean_error(vericam("audit", "verify", "--data", data), "cannot connect")


def test_the_help_says_how_to_choose_the_database():
    out = vericam("gateway", "run", "--help").stdout
    assert "--db" in out and "postgresql://" in out and "SQLite" in out
