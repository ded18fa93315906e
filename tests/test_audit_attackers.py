"""A database-only attacker cannot hide anything in the audit trail, on SQLite and on PostgreSQL.

The attacker can run any SQL on the metadata database (and, for the last test, restore an old
copy of the whole data directory), but never reads the key store's audit key. Each attack is
followed by ordinary, legitimate audited actions, which move the head anchored in the key store
past whatever the attacker did: the chain's keyed MACs and the signed checkpoints must still
show it.
"""

import hashlib
import json
import shutil
import sqlite3
from urllib.parse import urlsplit, urlunsplit

import pytest

from gateway.governance import audit
from gateway.storage import sqldb
from gateway.storage.store import Store

from support.cli import vericam
from support.retention import ALARM
from support.seeding import make_gateway_dir

FIELDS = ("seq", "at_ms", "who", "what", "why", "subject", "key_id", "content_hash", "detail")


@pytest.fixture
def data(tmp_path, engine):
    """A gateway that has audited eight image views (plus provisioning cam-1: 9 records)."""
    path = tmp_path / "gw"
    if engine:
        sqldb.bind(path, engine)
    make_gateway_dir(path)
    legitimate_actions(path, 8, who="op-1")
    return path


def legitimate_actions(data, n, who="op-2", subject="img"):
    """`n` image views audited by the gateway, each in its own transaction, as the console does."""
    with Store.open(data) as store:
        first = store.audit.head()[0] + 1
        for seq in range(first, first + n):
            with store.transaction():
                audit.append(store, who, "view image", "verifying alarm", at_ms=ALARM + seq,
                             subject=f"{subject}-{seq}", detail={"alarm": "a1"})


def unkeyed_hash(prev: str, record: dict) -> str:
    """The link as anyone can compute it from the schema: SHA-256 over the previous link and the fields."""
    body = json.dumps({k: record.get(k) for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()


class Attacker:
    """Someone with SQL access to the metadata database, and nothing else."""

    def __init__(self, data, engine):
        self.engine = engine
        if engine:
            import psycopg

            self.db = psycopg.connect(engine, autocommit=True)
        else:
            self.db = sqlite3.connect(data / "vericam.sqlite", isolation_level=None)

    def execute(self, sql, args=()):
        return self.db.execute(sql.replace("?", "%s") if self.engine else sql, args)

    def rows(self):
        cur = self.execute("SELECT * FROM audit ORDER BY seq")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def drop_the_append_only_guard(self):
        if self.engine:
            self.execute("ALTER TABLE audit DISABLE TRIGGER USER")
        else:
            self.execute("DROP TRIGGER audit_append_only_update")
            self.execute("DROP TRIGGER audit_append_only_delete")

    def close(self):
        self.db.close()


def verify(data, *extra):
    out = vericam("audit", "verify", "--data", data, "--json", *extra)
    return out.returncode, json.loads(out.stdout)


def test_a_record_inserted_with_a_valid_unkeyed_hash_is_detected_after_more_legitimate_actions(data, engine):
    sql = Attacker(data, engine)
    head = sql.rows()[-1]
    forged = {"seq": head["seq"] + 1, "at_ms": head["at_ms"] + 1, "who": "sup-1", "what": "view image",
              "why": "verifying alarm", "subject": "img-x", "key_id": None, "content_hash": None,
              "detail": '{"alarm":"a1"}', "prev_hash": head["hash"]}  # "sup-1 viewed image X"
    forged["hash"] = unkeyed_hash(head["hash"], forged)
    sql.execute("INSERT INTO audit (seq, at_ms, who, what, why, subject, key_id, content_hash, detail, prev_hash, "
                "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", tuple(forged.values()))
    sql.close()
    legitimate_actions(data, 3)  # the anchored head moves past the forged record

    code, v = verify(data)
    assert code == 1 and not v["ok"]
    assert v["records"] == 13 and v["anchored_seq"] == 13
    assert f"record {forged['seq']} was edited or forged: it does not verify under the audit key" in v["problems"]
    assert not any(p.startswith("record 11 ") or p.startswith("record 12 ") for p in v["problems"])


def test_rewriting_every_link_without_the_key_is_detected_after_more_legitimate_actions(data, engine):
    sql = Attacker(data, engine)
    sql.drop_the_append_only_guard()
    prev = "0" * 64
    for rec in sql.rows():  # a self-consistent chain in which op-1 never viewed img-5
        if rec["seq"] == 5:
            rec["subject"] = "img-4"
        rec["prev_hash"], rec["hash"] = prev, unkeyed_hash(prev, rec)
        sql.execute("UPDATE audit SET subject = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (rec["subject"], rec["prev_hash"], rec["hash"], rec["seq"]))
        prev = rec["hash"]
    sql.close()
    legitimate_actions(data, 2)

    code, v = verify(data)
    assert code == 1 and not v["ok"]
    assert v["anchored_seq"] == 11
    rewritten = [p for p in v["problems"] if p.endswith("was edited or forged: it does not verify under the audit key")]
    assert [int(p.split()[1]) for p in rewritten] == list(range(1, 10))


def snapshot(data, engine, where):
    """A copy of the metadata database as a backup would hold it."""
    if engine:
        import psycopg

        name = urlsplit(engine).path.lstrip("/")
        with psycopg.connect(admin_url(engine), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}_copy" TEMPLATE "{name}"')
        return f"{name}_copy"
    with sqlite3.connect(data / "vericam.sqlite") as live, sqlite3.connect(where) as copy:
        live.backup(copy)
    return where


def restore(data, engine, copy):
    """Put the copy back in place of the live metadata database."""
    if engine:
        import psycopg

        name = urlsplit(engine).path.lstrip("/")
        with psycopg.connect(admin_url(engine), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{copy}"')
            admin.execute(f'DROP DATABASE "{copy}"')
        return
    with sqlite3.connect(copy) as old, sqlite3.connect(data / "vericam.sqlite") as live:
        old.backup(live)


def admin_url(url):
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def test_a_restored_older_database_is_detected_with_the_exported_checkpoints(data, engine, tmp_path):
    copy = snapshot(data, engine, tmp_path / "old.sqlite")  # records 1..9
    legitimate_actions(data, 3, who="sup-1")  # 10..12: what the restore will erase
    worm = tmp_path / "worm" / "checkpoints.jsonl"
    worm.parent.mkdir()
    out = vericam("audit", "checkpoint", "--data", data, "--out", worm)
    assert out.returncode == 0, out.stderr
    assert json.loads(worm.read_text().splitlines()[-1])["seq"] == 12

    restore(data, engine, copy)
    legitimate_actions(data, 5)  # 10..14 again, other records: the anchor in the key store moves to 14

    code, v = verify(data, "--checkpoints", worm)
    assert code == 1 and not v["ok"] and v["records"] == 14
    assert any(p.startswith("record 12 differs from the signed checkpoint") for p in v["problems"])


def test_a_restored_older_data_directory_key_store_included_is_detected_only_with_the_exported_checkpoints(
        data, engine, tmp_path):
    copy = snapshot(data, engine, tmp_path / "old.sqlite")
    keys_copy = tmp_path / "old-keys"
    shutil.copytree(data / "keys", keys_copy)  # a backup of the whole host, key store and all
    legitimate_actions(data, 3, who="sup-1")
    worm = tmp_path / "checkpoints.jsonl"
    assert vericam("audit", "checkpoint", "--data", data, "--out", worm).returncode == 0

    restore(data, engine, copy)
    shutil.rmtree(data / "keys")
    shutil.copytree(keys_copy, data / "keys")
    legitimate_actions(data, 1)

    code, v = verify(data)
    assert code == 0, v["problems"]  # an older state, consistent in itself: only the outside copy knows better
    code, v = verify(data, "--checkpoints", worm)
    assert code == 1 and not v["ok"]
    assert any(p.startswith("a signed checkpoint at record 12 lies beyond the log's end at record 10")
               for p in v["problems"])
