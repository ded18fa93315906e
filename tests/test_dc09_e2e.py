"""A burglary reaches the ARC's own alarm receiver over SIA DC-09, whatever the receiver does meanwhile.

Real parts end to end: Mosquitto, the gateway process started with `--dc09`, the device on real
MicroPython with its simulated panel, and pysiaalarm (the receiver Home Assistant uses) as the
ARC's receiver, AES-256 on, behind a proxy that can take it down. What is checked is what the
ARC would see: the intrusion alarm first, under the panel's account, zone and code, then the
follow-up with the link to the alarm's console page once the photos are stored; each ACKed
exactly once, through the receiver that was up, with nothing lost while a receiver was down
or the gateway restarted.
"""

from __future__ import annotations

import time

import pytest

from gateway.forward.config import Settings
from simulator.bench.dc09 import ArcReceiver, write_key_file
from simulator.demo import play_burglary
from simulator.stack import Stack

pytestmark = pytest.mark.timeout(180)

DEVICE = "panel-1"
ACCOUNT = "1234"
KEY = "0123456789ABCDEF0123456789ABCDEF"        # pysiaalarm: 32 characters, AES-256
CONSOLE = "https://arc.example/vericam"


def settings(tmp_path, receivers: str) -> Settings:
    keys = write_key_file(tmp_path / "dc09.keys", {"*": KEY})
    return Settings(receivers, str(keys), console_url=CONSOLE, backoff_max_s=1.0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def burglary(stack: Stack):
    dev = stack.add_device(DEVICE)
    dev.boot()
    return play_burglary(stack)


def assert_alarm_then_follow_up(arc: ArcReceiver, reports: list[dict]) -> None:
    """The intrusion alarm and its follow-up: each at the receiver once, as the ARC files them."""
    alarm, follow_up = reports
    assert (alarm["event"], alarm["follow_up"], follow_up["event"], follow_up["follow_up"]) == \
        ("intrusion", False, "intrusion", True)
    got = arc.of(ACCOUNT)
    assert [e.sequence for e in got] == [f"{alarm['seq']:04d}", f"{follow_up['seq']:04d}"]   # each once, in order
    for event in got:
        assert event.encrypted and event.account == ACCOUNT
        assert (event.code, event.ri, event.message) == ("BA", "1", "001")    # burglary, area 1, zone 001
        assert event.x_data == f"V{CONSOLE}/alarms/{DEVICE}/{alarm['alarm_id']}"


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_burglary_reaches_the_receiver_as_an_alarm_at_once_then_with_its_photos(engine, tmp_path, request):
    # On both engines: the alarm's report, put leased to the gateway in the commit that stores
    # the alarm, is read back and sent by the transmitter it was handed to.
    db_url = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    with ArcReceiver({ACCOUNT: KEY}) as arc, \
            Stack(tmp_path / "run", dc09=settings(tmp_path, arc.where), db_url=db_url) as stack:
        result = burglary(stack)
        reports = stack.wait_dc09_acked(2, timeout=20)
        with stack.store() as s:
            (alarm_row,) = s.alarms.list(DEVICE)
    assert result["images_at_arc"] == 3
    assert_alarm_then_follow_up(arc, reports)
    assert {r["acked_by"] for r in reports} == {"primary"}
    # The alarm did not wait for its photos: the receiver had ACKed it before the first was stored.
    (alarm_acked_at, _event), *_ = arc.timed(ACCOUNT)
    assert alarm_acked_at * 1000 < alarm_row["first_stored_at_ms"]


def test_a_receiver_down_during_a_burglary_loses_nothing_and_gets_each_report_once(tmp_path):
    # The receiver is down for 60 s; here 10 s, with the backoff capped at 1 s instead of
    # the default 30 s. What 60 s tests is that the alarm and its follow-up wait while the backoff
    # grows to its cap and then keep being tried at the cap, losing nothing and keeping their
    # numbers. 60 s against a 30 s cap is 2 cap-lengths of that; 10 s against 1 s is 10: the same
    # path, more of it (at least 4 tries means the cap was reached: 0.5 s, then 1 s each).
    with ArcReceiver({ACCOUNT: KEY}) as arc, Stack(tmp_path / "run", dc09=settings(tmp_path, arc.where)) as stack:
        arc.down()
        down_at = time.monotonic()
        result = burglary(stack)            # the photos are stored meanwhile: the ingest waits for no receiver
        queued = stack.dc09_reports()
        assert result["images_at_arc"] == 3 and len(queued) == 2
        assert not any(r["acked_by"] for r in queued) and arc.of(ACCOUNT) == []
        time.sleep(max(0.0, 10.0 - (time.monotonic() - down_at)))     # down for 10 s in all
        deadline = time.monotonic() + 20           # (longer only if a loaded machine slowed the burglary)
        while (tries_while_down := max(r["attempts"] for r in stack.dc09_reports())) < 4 \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        arc.up()
        reports = stack.wait_dc09_acked(2, timeout=20)
    assert tries_while_down >= 4                                        # it kept trying, backoff at its cap
    assert [r["seq"] for r in reports] == [r["seq"] for r in queued]   # the numbers they were given
    assert_alarm_then_follow_up(arc, reports)


def test_a_naking_receiver_gets_each_report_once_when_it_stops_naking(tmp_path):
    # The ARC's receiver has the wrong key for the account: it cannot read the messages and
    # answers NAK. The reports wait, their numbers fixed, and the log says what to check; the
    # photos' follow-up waits behind its alarm, which the NAKs keep backing off longer (a CI run
    # once saw the follow-up reach the receiver first). Once the ARC fixes the key, each goes
    # through once: the alarm, then its follow-up.
    with ArcReceiver({ACCOUNT: KEY[::-1]}) as arc, Stack(tmp_path / "run", dc09=settings(tmp_path, arc.where)) as stack:
        result = burglary(stack)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queued = stack.dc09_reports()
            if len(queued) == 2 and queued[0]["attempts"] >= 2:
                break
            time.sleep(0.1)
        assert result["images_at_arc"] == 3 and len(queued) == 2
        alarm, follow_up = queued
        assert alarm["attempts"] >= 2 and not alarm["follow_up"] and follow_up["follow_up"]   # NAKed, twice at least
        assert not alarm["acked_by"] and not follow_up["acked_by"]
        assert arc.of(ACCOUNT) == []
        assert "NAK although our clocks agree: check the key and the account 1234" in stack.gateway_log()
        arc.set_accounts({ACCOUNT: KEY})                                          # the ARC fixes the key
        reports = stack.wait_dc09_acked(2, timeout=20)
    assert [r["seq"] for r in reports] == [r["seq"] for r in queued]
    assert_alarm_then_follow_up(arc, reports)
    assert {r["acked_by"] for r in reports} == {"primary"}


def test_with_the_primary_down_the_backup_gets_the_burglary(tmp_path):
    with ArcReceiver({ACCOUNT: KEY}) as backup, \
            Stack(tmp_path / "run", dc09=settings(tmp_path, f"127.0.0.1:{free_port()},{backup.where}")) as stack:
        burglary(stack)
        reports = stack.wait_dc09_acked(2, timeout=20)
    assert_alarm_then_follow_up(backup, reports)
    assert {r["acked_by"] for r in reports} == {"backup"}


def test_a_gateway_restart_resends_what_was_not_acked_with_the_same_numbers(tmp_path):
    with ArcReceiver({ACCOUNT: KEY}) as arc, Stack(tmp_path / "run", dc09=settings(tmp_path, arc.where)) as stack:
        arc.down()
        burglary(stack)
        queued = stack.dc09_reports()
        assert len(queued) == 2 and not any(r["acked_by"] for r in queued)
        stack.stop_gateway()                # stopped with both reports unacknowledged
        arc.up()
        stack.start_gateway()
        reports = stack.wait_dc09_acked(2, timeout=20)
    assert [r["seq"] for r in reports] == [r["seq"] for r in queued]
    assert_alarm_then_follow_up(arc, reports)
