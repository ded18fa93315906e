"""A police hold needs a supervisor, a reason and a case; it keeps images up to 30 days after the
alarm under a 30-day KEK, and releasing it puts them back on the 7-day schedule."""

import time

import pytest

from gateway.governance import audit

from gateway.governance import hold, users
from gateway.storage.store import Store

from support.cli import vericam
from support.retention import ALARM, DAY, DUE, ms, stored_ids, sweeper
from support.seeding import intact, make_gateway_dir, seed


@pytest.fixture
def data(tmp_path):
    return make_gateway_dir(tmp_path / "gw")


def test_a_hold_needs_a_supervisor_a_reason_and_a_case(data):
    with Store.open(data) as store:
        ids = seed(store, "cam-1", ALARM)
        now = ALARM + DAY
        with pytest.raises(hold.HoldError, match="reason"):
            hold.place(store, ids[0], "sue", " ", "K-1", now, role="supervisor")
        with pytest.raises(hold.HoldError, match="case reference"):
            hold.place(store, ids[0], "sue", "burglary", "", now, role="supervisor")
        with pytest.raises(hold.HoldError, match="state --role supervisor"):
            hold.place(store, ids[0], "sue", "burglary", "K-1", now)
        with pytest.raises(hold.HoldError, match="state --role supervisor"):
            hold.place(store, ids[0], "olle", "burglary", "K-1", now, role="operator")
        users.add_user(store, "olle", "operator", None, "admin", now)
        users.add_user(store, "sue", "supervisor", None, "admin", now)
        with pytest.raises(hold.HoldError, match="needs the supervisor role"):
            hold.place(store, ids[0], "olle", "burglary", "K-1", now)
        with pytest.raises(hold.HoldError, match="drop --role"):
            hold.place(store, ids[0], "olle", "burglary", "K-1", now, role="supervisor")
        with pytest.raises(hold.HoldError, match="not an active user"):
            hold.place(store, ids[0], "mallory", "burglary", "K-1", now)
        r = hold.place(store, ids[0], "sue", "burglary", "K-1", now)
        assert r["role_source"] == "users table"
        assert store.db.execute("SELECT hold_id FROM images WHERE id = ?", (ids[0],)).fetchone()[0] == r["hold"]


def test_a_hold_rewraps_the_key_under_the_thirty_day_kek(data):
    with Store.open(data) as store:
        ids = seed(store, "cam-1", ALARM, frames=3)
        before = {i: store.images.read(i) for i in ids}
        alarm = store.images.list()[0]["alarm_id"]
        r = hold.place(store, alarm, "sue", "suspect seen", "K-2026-0042", ALARM + DAY, role="supervisor")
        assert r["images"] == 3 and r["delete_on"] == ["2026-02-09"]
        rows = store.db.execute("SELECT kek_day, delete_at_ms FROM images").fetchall()
        assert {(x[0], x[1]) for x in rows} == {("2026-02-09/hold-1", ms(2026, 2, 9))}
        sweeper(store, DUE).sweep()  # the 7-day KEK goes: the held images are unharmed
        assert store.keys.is_destroyed("2026-01-17")
        assert {i: store.images.read(i) for i in ids} == before
        rec = audit.records(store, what="place hold")[0]
        assert rec["who"] == "sue" and rec["why"] == "suspect seen"
        assert rec["detail"]["case"] == "K-2026-0042" and rec["detail"]["role_source"].startswith("asserted")


def test_no_hold_can_reach_past_thirty_days(data):
    with Store.open(data) as store:
        ids = seed(store, "cam-1", ALARM)
        with pytest.raises(hold.HoldError, match="past the legal maximum"):
            hold.place(store, ids[0], "sue", "late request", "K-9", ms(2026, 2, 9), role="supervisor")


def test_releasing_before_day_seven_puts_images_back_on_schedule(data):
    with Store.open(data) as store:
        ids = seed(store, "cam-1", ALARM)
        h = hold.place(store, ids[0], "sue", "x", "K-1", ALARM + DAY, role="supervisor")["hold"]
        r = hold.release(store, str(h), "sue", "case closed", ALARM + 2 * DAY, role="supervisor")
        assert (r["back_on_schedule"], r["deleted_now"]) == (1, 0)
        assert store.db.execute("SELECT kek_day, hold_id FROM images WHERE id = ?", (ids[0],)).fetchone()[:] == \
            ("2026-01-17", None)
        assert intact(store, ids[0])
        sweeper(store, DUE).sweep()
        assert stored_ids(store) == set()


def test_releasing_after_day_seven_deletes_at_once(data):
    with Store.open(data) as store:
        ids = seed(store, "cam-1", ALARM)
        blob = data / store.images.list()[0]["blob_path"]
        hold.place(store, ids[0], "sue", "x", "K-1", ALARM + DAY, role="supervisor")
        sweeper(store, DUE).sweep()
        assert stored_ids(store) == {ids[0]}
    out = vericam("hold", "release", ids[0], "--data", str(data), "--by", "sue",
                  "--reason", "no longer needed", "--role", "supervisor")
    assert out.returncode == 0, out.stderr
    assert "1 deleted now" in out.stdout
    with Store.open(data) as store:
        assert stored_ids(store) == set()
        assert store.keys.is_destroyed("2026-02-09/hold-1"), "the hold's own key went with its last image"
        deleted = [r for r in audit.records(store, what="delete image") if r["subject"] == ids[0]]
        assert deleted and deleted[0]["who"] == "sue" and "released" in deleted[0]["why"]
        assert audit.verify(store).ok
    assert not any(p.name.startswith(ids[0]) for p in (data / "blobs").rglob("*"))


def test_the_cli_places_a_hold_on_an_alarm_and_refuses_without_a_case(data):
    with Store.open(data) as store:
        seed(store, "cam-1", int(time.time() * 1000), alarm_id="a1b2c3d4e5f60718")
    base = ["hold", "place", "cam-1/a1b2c3d4e5f60718", "--data", str(data), "--by", "sue", "--role", "supervisor",
            "--reason", "burglary"]
    out = vericam(*base, "--case", "")
    assert out.returncode == 3 and "case reference" in out.stderr
    out = vericam(*base, "--case", "K-7")
    assert out.returncode == 0, out.stderr
    assert "hold #1 on 2 images for case K-7" in out.stdout


def test_the_users_command_gives_a_supervisor_without_a_console_login(data):
    with Store.open(data) as store:
        seed(store, "cam-1", int(time.time() * 1000), alarm_id="a1b2c3d4e5f60718")
    out = vericam("users", "add", "sue", "--role", "supervisor", "--no-password", "--data", str(data))
    assert out.returncode == 0, out.stderr
    out = vericam("users", "list", "--data", str(data))
    assert out.stdout.split() == ["sue", "supervisor", "no", "password"]
    with Store.open(data) as store:
        assert users.authenticate(store, "sue", "") is None  # a role, but no console login
    out = vericam("hold", "place", "cam-1/a1b2c3d4e5f60718", "--data", str(data), "--by", "sue",
                  "--reason", "burglary", "--case", "K-8")
    assert out.returncode == 0, out.stderr
    assert "role: users table" in out.stdout
    gone = vericam("hold", "add-user", "olle", "--role", "operator", "--by", "sue", "--data", str(data))
    assert gone.returncode == 2, "one user command: `vericam users add`"


def test_listing_holds_needs_a_supervisor_or_an_auditor_and_is_audited(data):
    with Store.open(data) as store:
        ids = seed(store, "cam-1", ALARM)
        hold.place(store, ids[0], "sue", "burglary", "K-1", ALARM + DAY, role="supervisor")
    base = ("hold", "list", "--data", str(data))
    assert vericam(*base).returncode == 2  # --by is required
    asserted = vericam(*base, "--by", "olle", "--role", "operator")
    assert asserted.returncode == 3 and "supervisor or auditor" in asserted.stderr
    assert vericam(*base, "--by", "sue", "--role", "supervisor").returncode == 0
    with Store.open(data) as store:
        for name, role in (("olle", "operator"), ("adam", "admin"), ("sue", "supervisor"), ("aud", "auditor")):
            users.add_user(store, name, role, None, "admin", ALARM + DAY)
    for name in ("olle", "adam", "nobody"):
        refused = vericam(*base, "--by", name)
        assert refused.returncode == 3 and refused.stdout == "", refused.stderr
    for name in ("sue", "aud"):
        listed = vericam(*base, "--by", name, "--active")
        assert listed.returncode == 0 and "K-1" in listed.stdout, listed.stderr
    with Store.open(data) as store:
        reads = audit.records(store, "view holds")
    assert [(r["who"], r["detail"]["role"], r["detail"]["holds"]) for r in reads] == [
        ("sue", "supervisor", 1), ("sue", "supervisor", 1), ("aud", "auditor", 1)]
