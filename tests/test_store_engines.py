"""One storage contract, two engines: every test here runs on SQLite and on a real PostgreSQL.

What an ARC cares about holds on both: the schema migrates from nothing and again without
harm, a capture is stored once however often (and by however many gateways) it arrives, the
photos read back, alarms and the activity log are kept, a police hold survives the sweep that
deletes the rest, and the audit log stays append-only and verifiable.
"""

import hashlib
import os
import threading
import time

import pytest

from gateway.governance import audit

from gateway.governance import hold

from gateway.storage import sqldb
from gateway.ingest.pipeline import Ingest, Message
from gateway.storage.keystore import KeyDestroyed
from gateway.protocol import envelope as env
from gateway.provisioning.devices import register_device, revoke_device
from gateway.storage.captures import CaptureRecord
from gateway.storage.migrations import MIGRATIONS, PG_MIGRATIONS
from gateway.storage.store import Store, StoreError
from simulator.fake_device import FakeDevice

from support import console_seed
from support.retention import ALARM, DAY, DUE, stored_ids, sweeper
from support.scaleout import race
from support.seeding import make_gateway_dir, seed

JPEGS = [b"\xff\xd8\xff\xe0" + os.urandom(4000) + b"\xff\xd9", b"\xff\xd8\xff\xe0" + os.urandom(2500) + b"\xff\xd9"]


@pytest.fixture
def data(tmp_path, engine):
    """A provisioned gateway data directory (ARC key, devices cam-1 and cam-2) on the engine."""
    path = tmp_path / "gw"
    if engine:
        sqldb.bind(path, engine)
    return make_gateway_dir(path, devices=("cam-1", "cam-2"))


def configs(data):
    """Device configs as the firmware holds them (device key and ARC key), for the test devices."""
    from gateway.provisioning.devices import arc_public

    with Store.open(data) as store:
        arc = arc_public(store.keys)
        keys = {r[0]: store.keys.unwrap_device_key(bytes(r[1]))
                for r in store.db.execute("SELECT id, device_key FROM devices")}
    return {d: {"device_id": d, "site": "s", "device_key": k.hex(), **arc} for d, k in keys.items()}


def receipts(device, outbound):
    return [env.parse_receipt_body(device.open_downlink(o.topic, o.payload).body)
            for o in outbound if o.topic.endswith("/down/receipt")]


# Schema --------------------------------------------------------------------------------------
def test_the_schema_migrates_from_nothing_and_a_rerun_changes_nothing(data, engine):
    with Store.open(data) as store:
        assert store.db.engine == ("postgresql" if engine else "sqlite")
        assert store.schema_version() == len(MIGRATIONS) == len(PG_MIGRATIONS)
        assert store.migrate() == len(MIGRATIONS)  # again: nothing to do, nothing breaks
    with Store.open(data) as store:
        versions = [r[0] for r in store.db.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_a_database_newer_than_the_gateway_is_refused_not_downgraded(data):
    with Store.open(data) as store:
        store.db.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer than this gateway knows"):
        Store.open(data)


def test_both_engines_build_the_same_tables_and_columns(tmp_path, pg_url):
    with Store.open(tmp_path / "lite") as lite, Store.open(tmp_path / "pg", db=pg_url) as pg:
        tables = [r[0] for r in lite.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        on_lite = {t: sorted(r[1] for r in lite.db.execute(f"PRAGMA table_info({t})")) for t in tables}
        on_pg = {}
        for r in pg.db.execute("SELECT table_name, column_name FROM information_schema.columns "
                               "WHERE table_schema = 'public' ORDER BY table_name, column_name"):
            on_pg.setdefault(r["table_name"], []).append(r["column_name"])
    assert on_pg == on_lite
    assert "images" in on_pg and "delete_at_ms" in on_pg["images"]


def test_two_gateways_starting_at_once_on_an_empty_postgresql_migrate_it_once(tmp_path, pg_url):
    stores, errors = [], []
    go = threading.Barrier(3)

    def start(i):
        go.wait()
        try:
            stores.append(Store.open(tmp_path / f"gw{i}", db=pg_url))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        assert stores[0].db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(PG_MIGRATIONS)
    finally:
        for s in stores:
            s.close()


# Devices -------------------------------------------------------------------------------------
def test_devices_are_provisioned_once_revoked_and_their_replay_window_kept(data):
    with Store.open(data) as store:
        with pytest.raises(StoreError, match="already provisioned"):
            register_device(store, "cam-1", "elsewhere", os.urandom(32))
        assert [d["id"] for d in store.devices.list()] == ["cam-1", "cam-2"]
        assert store.devices.keys_for("cam-1") is not None
        window = store.devices.replay_window("cam-1")
        window.accept(41)
        with store.transaction():
            store.devices.save_replay_window("cam-1", window)
            store.devices.touch("cam-1", 5_000)
            store.devices.touch("cam-1", 4_000)  # an older message never moves "last seen" back
        assert store.devices.replay_window("cam-1").high == 41
        assert {d["id"]: d["last_seen_ms"] for d in store.devices.list()}["cam-1"] == 5_000
        assert revoke_device(store, "cam-1") and store.devices.keys_for("cam-1") is None
        assert [r["what"] for r in audit.records(store)].count("configure device") == 3  # 2 added, 1 revoked


# Captures, images, spool ---------------------------------------------------------------------
def test_a_capture_is_stored_once_its_photos_read_back_and_a_resend_gets_the_same_receipt(data):
    dev = FakeDevice(configs(data)["cam-1"], chunk_size=1024)
    cid, sealed = dev.seal(JPEGS)
    msgs = dev.chunk_messages(cid, sealed, alarm_id=b"B" * 8)
    with Store.open(data) as store:
        ingest = Ingest(store, log=lambda _l: None)
        first = ingest.process_batch([Message(t, p) for t, p in msgs[:-1]])
        assert first.outbound == [] and store.spool.size() == len(msgs) - 1
        done = ingest.process_batch([Message(t, p) for t, p in msgs[-1:]])
        want = (cid, env.RECEIPT_STORED, 2, hashlib.sha256(sealed).digest())
        assert receipts(dev, done.outbound) == [want]
        store.captures.mark_stored([s.rowid for s in done.stored], 123)
        # The device did not get the receipt and sends the whole capture again.
        again = ingest.process_batch([Message(t, p) for t, p in dev.chunk_messages(cid, sealed, alarm_id=b"B" * 8)])
        assert receipts(dev, again.outbound) == [want]
        assert [store.images.read(i["id"]) for i in store.images.list("cam-1")] == JPEGS
        [capture] = store.captures.list("cam-1")
        assert capture["frames"] == 2 and capture["stored_at_ms"] == 123 and store.spool.size() == 0
        assert store.captures.claim(CaptureRecord("cam-1", cid.hex(), "x", "stored", "0" * 64, 1, 1, 1)) is None


def test_the_chunk_spool_keeps_one_copy_of_a_chunk_and_expires_partial_captures(data):
    with Store.open(data) as store:
        with store.transaction():
            for _ in range(2):
                store.spool.add_unless_decided("cam-1", "c1", 0, 3, 30, "a1", b"x" * 10, 1_000)
            store.spool.add_unless_decided("cam-1", "c1", 1, 3, 30, "a1", b"y" * 10, 2_000)
        state = store.spool.state("cam-1", "c1")
        assert (state["have"], state["bytes"], state["count"], state["first_ms"]) == (2, 20, 3, 1_000)
        assert store.spool.assemble("cam-1", "c1") == b"x" * 10 + b"y" * 10
        assert store.spool.expired(1_500) == [("cam-1", "c1")] and store.spool.expired(500) == []
        assert store.spool.in_flight("cam-1") == ["c1"]


# Alarms, events, rejections ------------------------------------------------------------------
def test_alarms_and_the_activity_log_are_kept(data):
    with Store.open(data) as store:
        with store.transaction():
            store.alarms.note("cam-1", "a1", 1_000)
            alarm = store.alarms.note("cam-1", "a1", 9_000, code="intrusion", t=77)
            store.alarms.link_capture("cam-1", "a1", "c1")
            store.alarms.link_capture("cam-1", "a1", "c1")
            ids = [store.events.add("cam-1", {"kind": k, "slot": 2, "t": 5}, 1_000 + i, clock_unset=False)
                   for i, k in enumerate(("armed", "alarm"))]
            store.rejections.count("replay", 10)
            store.rejections.count("replay", 20)
        assert (alarm["code"], alarm["t"], alarm["received_at_ms"]) == ("intrusion", 77, 1_000)
        [listed] = store.alarms.list("cam-1")
        assert listed["captures"] == ["c1"] and listed["captures_stored"] == 0
        assert ids[1] > ids[0]
        assert [(e["kind"], e["slot"], e["event"]["kind"]) for e in store.events.list("cam-1")] == \
            [("armed", 2, "armed"), ("alarm", 2, "alarm")]
        assert store.rejections.counts() == {"replay": 2}
        assert store.alarms.first("cam-1")["alarm_id"] == "a1"


def test_a_failed_transaction_leaves_nothing_behind(data):
    with Store.open(data) as store:
        with pytest.raises(RuntimeError):
            with store.transaction():
                seed_ids = [store.images.put(JPEGS[0], device="cam-1", capture_id="c9", alarm_id="a9", frame_index=0,
                                             frame_t=1, kek_day="2026-01-17", at_ms=ALARM)]
                raise RuntimeError("disk trouble")
        assert store.images.list() == [] and not store.db.in_transaction
        assert not (data / "blobs" / "2026-01-17" / f"{seed_ids[0]}.vcb").exists()


# Retention, holds, audit ---------------------------------------------------------------------
def test_a_held_alarm_survives_the_sweep_that_deletes_the_rest_and_the_audit_chain_verifies(data):
    with Store.open(data) as store:
        held = seed(store, "cam-1", ALARM, frames=2)
        other = seed(store, "cam-2", ALARM, frames=1)
        alarm = store.images.list("cam-1")[0]["alarm_id"]
        placed = hold.place(store, alarm, "sue", "suspect seen", "K-1", ALARM + DAY, role="supervisor")
        assert placed["images"] == 2 and [h["id"] for h in hold.list_holds(store, active_only=True)] == [placed["hold"]]
        report = sweeper(store, DUE).sweep()
        assert report.images_deleted == 1 and stored_ids(store) == set(held)
        assert not set(other) & stored_ids(store)
        assert [store.images.read(i)[:4] for i in held] == [b"\xff\xd8\xff\xe0"] * 2
        hold.release(store, str(placed["hold"]), "sue", "case closed", DUE + DAY, role="supervisor")
        sweeper(store, DUE + DAY).sweep()
        assert stored_ids(store) == set()
        whats = [r["what"] for r in audit.records(store)]
        assert whats.count("delete image") == 3 and "place hold" in whats and "release hold" in whats
        assert audit.verify(store).ok


def test_two_sweepers_racing_over_the_same_due_images_delete_and_audit_each_once(data):
    """Two gateway workers' sweepers wake at once: one deletion, one record, one shredded key each."""
    with Store.open(data) as first:
        due = [i for n in range(4) for i in seed(first, f"cam-{n % 2 + 1}", ALARM, frames=3)]
        kept = seed(first, "cam-1", ALARM + DAY)
    with Store.open(data) as a, Store.open(data) as b:
        sweepers = [sweeper(a, DUE, batch=5), sweeper(b, DUE, batch=5)]
        both_selected = threading.Barrier(2)
        for s in sweepers:  # hold each sweeper after its first batch's blobs are gone, so both took the same rows
            s.on_files_gone = lambda hit=[]: hit or (hit.append(1), both_selected.wait(10))
        reports = race(sweepers[0].sweep, sweepers[1].sweep)  # raises what either raised
        assert stored_ids(a) == set(kept)
        deleted = [r["subject"] for r in audit.records(a, what="delete image")]
        assert sorted(deleted) == sorted(due), "each image deleted and audited exactly once"
        assert reports[0].images_deleted + reports[1].images_deleted == len(due)
        assert [r["subject"] for r in audit.records(a, what="destroy kek")] == ["2026-01-17"]
        assert reports[0].keks_destroyed + reports[1].keks_destroyed == ["2026-01-17"]
        for store in (a, b):
            with pytest.raises(KeyDestroyed):
                store.keys.kek("2026-01-17", create=False)
        assert not (data / "blobs" / "2026-01-17").exists() or not list((data / "blobs" / "2026-01-17").iterdir())
        assert [a.images.read(i)[:4] for i in kept] == [b"\xff\xd8\xff\xe0"] * len(kept)
        assert audit.verify(a).ok


def test_the_audit_log_refuses_to_be_rewritten(data):
    with Store.open(data) as store:
        with pytest.raises(Exception, match="append-only"):
            store.db.execute("UPDATE audit SET who = 'mallory'")
        with pytest.raises(Exception, match="append-only"):
            store.db.execute("DELETE FROM audit")
        assert audit.verify(store).ok


# Two writers ---------------------------------------------------------------------------------
def test_two_writers_claiming_the_same_capture_at_once_store_one_row(data):
    """The second writer waits on the unique key and then finds the capture claimed."""
    with Store.open(data) as first, Store.open(data) as second:
        second_got = []
        with first.transaction():
            assert first.captures.claim(CaptureRecord("cam-1", "c1", "a1", "stored", "0" * 64, 10, 2, 1, "intrusion",
                                                      1)) is not None

            def claim():
                with second.transaction():
                    second_got.append(second.captures.claim(CaptureRecord("cam-1", "c1", "a1", "stored", "1" * 64, 10, 2,
                                                                          2, "intrusion", 1)))

            racer = threading.Thread(target=claim)
            racer.start()
            time.sleep(0.3)
            assert racer.is_alive(), "the second writer did not wait for the first one's commit"
        racer.join(30)
        assert second_got == [None]
        rows = first.db.execute("SELECT sha256 FROM captures WHERE device = 'cam-1' AND capture_id = 'c1'").fetchall()
        assert [r[0] for r in rows] == ["0" * 64]


def test_two_gateways_ingesting_the_same_captures_at_once_store_each_exactly_once(data):
    """A `$share` redelivery hands the same chunks to two gateways: one row, one set of photos."""
    dev = FakeDevice(configs(data)["cam-1"], chunk_size=1024)
    batches = []
    for n in range(4):
        cid, sealed = dev.seal(JPEGS, capture_id=bytes([n]) * 16)
        batches.append([Message(t, p) for t, p in dev.chunk_messages(cid, sealed, alarm_id=b"C" * 8)])
    with Store.open(data) as a, Store.open(data) as b:
        gateways = [Ingest(a, log=lambda _l: None), Ingest(b, log=lambda _l: None)]
        got = {0: [], 1: []}
        for batch in batches:
            go = threading.Barrier(2)

            def work(i, batch=batch, go=go):
                go.wait()
                got[i] += receipts(dev, gateways[i].process_batch(batch).outbound)

            threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        captures = a.captures.list("cam-1")
        assert len(captures) == len(batches) and {c["status"] for c in captures} == {"stored"}
        assert len(a.images.list("cam-1")) == len(batches) * len(JPEGS)
        stored = {r[0] for r in got[0] + got[1] if r[1] == env.RECEIPT_STORED}
        assert stored == {bytes([n]) * 16 for n in range(len(batches))}  # every capture receipted
        assert a.spool.size() == 0


def test_a_bad_message_in_a_batch_is_undone_down_to_its_counter_and_the_rest_of_the_batch_stands(data):
    """The batch keeps device rows in memory; a message's savepoint must still undo its part."""
    cams = {d: FakeDevice(c, chunk_size=1024) for d, c in configs(data).items()}
    cid, sealed = cams["cam-1"].seal(JPEGS)
    good = [Message(t, p) for t, p in cams["cam-1"].chunk_messages(cid, sealed, alarm_id=b"D" * 8)]
    bad = Message(*cams["cam-2"].envelope(env.T_CAPTURE, b"not a chunk"))  # MAC fine, body not
    heard = Message(*cams["cam-2"].envelope(env.T_HEARTBEAT, b""))
    with Store.open(data) as store:
        ingest = Ingest(store, log=lambda _l: None)
        result = ingest.process_batch(good[:2] + [bad] + good[2:] + [heard])
        assert [c["status"] for c in store.captures.list("cam-1")] == ["stored"]
        assert sum(result.rejected.values()) == 1 and "replay" not in result.rejected
        assert store.devices.replay_window("cam-1").high == cams["cam-1"].counter
        window = store.devices.replay_window("cam-2")
        assert window.high == cams["cam-2"].counter  # the heartbeat after the bad message counts
        assert not window.bitmap >> 1 & 1  # the bad message's counter was not recorded
        assert all(d["last_seen_ms"] for d in store.devices.list())
        again = ingest.process_batch([bad, good[0]])
        assert set(again.rejected) == set(result.rejected) | {"replay"}  # bad again, not a replay
        assert again.rejected["replay"] == 1


def test_reassembly_rules_hold_on_both_engines_and_a_refused_chunk_leaves_the_spool_as_it_was(data):
    from gateway.protocol import capture as cap

    dev = FakeDevice(configs(data)["cam-1"], chunk_size=1024)
    sealed = {}
    for n in range(5):
        cid, sealed[cid] = dev.seal(JPEGS)
    firsts = [Message(*dev.chunk_messages(cid, s, alarm_id=b"E" * 8)[0]) for cid, s in sealed.items()]
    with Store.open(data) as store:
        ingest = Ingest(store, log=lambda _l: None)
        assert ingest.process_batch(firsts).rejected == {"too_many_captures": 1}  # 4 in flight at most
        assert store.spool.size() == 4
        cid, blob = next(iter(sealed.items()))
        count = cap.parse_chunk(env.parse(firsts[0].payload).body).count
        other_alarm = Message(*dev.envelope(env.T_CAPTURE, cap.build_chunk(cid, b"X" * 8, len(blob), 1, count,
                                                                              blob[1024:2048])))
        resent_first = Message(*dev.chunk_messages(cid, blob, alarm_id=b"E" * 8)[0])  # new counter
        assert ingest.process_batch([other_alarm, resent_first]).rejected == {"malformed": 1}
        assert store.spool.size() == 4  # the refused chunk rolled back, the resent one kept once
        rest = [Message(*m) for m in dev.chunk_messages(cid, blob, alarm_id=b"E" * 8)[1:]]
        assert [c.capture_id for c in ingest.process_batch(rest).stored] == [cid.hex()]
        assert store.spool.size() == 3


# The operator console and data-subject rights, on the same rows -------------------------------
def test_the_console_and_a_subject_export_and_erasure_work_on_both_engines(tmp_path, engine):
    from gateway.governance import subject

    from gateway.console import data as console
    from gateway.governance import alarms, users
    from gateway.governance.police_export import build_bundle

    path = tmp_path / "gw"
    if engine:
        sqldb.bind(path, engine)
    console_seed.init(path)
    aid = console_seed.ingest_alarm(path, frames=3)
    now = int(time.time() * 1000)
    with Store.open(path) as store:
        [queued] = alarms.alarm_queue(store)
        assert (queued["alarm_id"], queued["photos"], queued["held"], queued["state"]) == (aid, 3, 0, "new")
        alarms.acknowledge(store, "cam-1", aid, "olivia", now)
        hold.place(store, f"cam-1/{aid}", "sam", "suspect seen", "K-7", now)
        name, bundle, _meta = build_bundle(store, "cam-1", aid, "sam", now)
        assert name.endswith(".zip") and len(bundle) > 3 * 1000
        alarms.close(store, "cam-1", aid, "olivia", "verified-burglary", "police on site", now)
        assert alarms.alarm(store, "cam-1", aid)["handling"]["state"] == "closed"
        assert {a["kind"] for a in console.activity(store, "Storgatan 12", None, None)} >= {"armed", "alarm"}
        assert [d["state"] for d in console.devices(store)] == ["online"]
        assert {u["name"]: u["can_log_in"] for u in users.list_users(store)}["sam"] == 1
        assert users.authenticate(store, "sam", console_seed.PASSWORDS["sam"]) == "supervisor"

        subject.add_customer(store, "cust-1", "A. Person", "adam", now)
        subject.link_device(store, "cam-1", "cust-1", "adam", now)
        exported = subject.export(store, "cust-1", tmp_path / "export", "adam", "access request", now)
        assert exported["images"] == 3 and subject.verify_manifest(tmp_path / "export") == []
        erased = subject.erase(store, "cust-1", "adam", "erasure request", now)
        assert erased["images_erased"] == 0 and "police hold" in erased["kept"][0]["why"]  # the hold keeps them
        assert audit.verify(store).ok


def test_a_lost_postgresql_connection_fails_the_batch_for_a_retry_and_the_next_try_stores_it(tmp_path, pg_url):
    """Never a verdict on the message: the batch is not stored, not rejected, and goes in on the retry."""
    import psycopg

    engine = pg_url
    data = tmp_path / "gw"
    sqldb.bind(data, pg_url)
    make_gateway_dir(data)

    dev = FakeDevice(configs(data)["cam-1"], chunk_size=4096)
    cid, sealed = dev.seal(JPEGS)
    batch = [Message(t, p) for t, p in dev.chunk_messages(cid, sealed, alarm_id=b"D" * 8)]
    with Store.open(data) as store:
        ingest = Ingest(store, log=lambda _l: None)
        pid = store.db.execute("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(engine, autocommit=True) as admin:  # the server drops the gateway's session
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            ingest.process_batch(batch)
        done = ingest.process_batch(batch)  # what the service's retry does: a new connection, all of it stored
        assert receipts(dev, done.outbound) == [(cid, env.RECEIPT_STORED, 2, hashlib.sha256(sealed).digest())]
        assert store.rejections.counts() == {} and len(store.images.list("cam-1")) == 2
