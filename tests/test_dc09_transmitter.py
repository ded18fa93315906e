"""Alarms reach the ARC's own receiver: pysiaalarm, the receiver Home Assistant uses, on loopback.

Every test starts real receivers on free loopback ports: pysiaalarm's threaded SIAClient with
encryption on, or a small fake written here where the test needs a receiver that misbehaves
(NAKs, DUHs, answers garbage, stalls). The gateway side is the real Forwarder, outbox and
transmitter threads. Outcomes are what an ARC would see: which events its receiver parsed and
ACKed, under which account, code and zone, through which receiver, and that nothing was lost.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from contextlib import contextmanager
from dataclasses import replace

import pytest
from pysiaalarm import CommunicationsProtocol, SIAAccount, SIAClient
from pysiaalarm.base_server import BaseSIAServer
from pysiaalarm.event import SIAEvent
from pysiaalarm.utils import Counter

from gateway.forward import codes, dc09
from gateway.forward.forwarder import Forwarder, Site
from gateway.forward.outbox import FileOutbox, MemoryOutbox
from gateway.forward.transmitter import Receiver, Route

pytestmark = pytest.mark.timeout(60)

KEY = "0123456789ABCDEF0123456789ABCDEF"      # pysiaalarm: the ASCII bytes are the AES-256 key
KEY_B = KEY.encode()
SITES = {"dev-1": Site("1234", zone=3), "dev-2": Site("5678", area=2, zone=11)}
FAST = dict(connect_timeout_s=1.0, ack_timeout_s=1.0, backoff_first_s=0.05, backoff_max_s=0.3,
            poll_s=0.05, null_interval_s=3600.0)


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Received:
    """What a receiver parsed and ACKed."""

    def __init__(self, port: int):
        self.port = port
        self.events: list[SIAEvent] = []
        self.lock = threading.Lock()

    def add(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, account: str, null: bool = False) -> list[SIAEvent]:
        with self.lock:
            return [e for e in self.events if e.account == account and (e.code == "RP") == null]


@contextmanager
def pysiaalarm(accounts: dict[str, str | None], transport: str = "tcp"):
    received = Received(0)
    client = SIAClient("127.0.0.1", 0, [SIAAccount(a, k) for a, k in accounts.items()], received.add,
                       protocol=CommunicationsProtocol.UDP if transport == "udp" else CommunicationsProtocol.TCP)
    received.port = client.sia_server.server_address[1]
    client.start()
    try:
        yield received
    finally:
        client.stop()


@contextmanager
def fake_receiver(answer):
    """A TCP receiver whose answer to each line is `answer(line, n)`: bytes, or None to stay silent."""
    lines: list[bytes] = []
    lock = threading.Lock()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            buf = b""
            self.request.settimeout(0.2)
            while not server.closing:
                try:
                    chunk = self.request.recv(1024)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r" in buf:
                    line, buf = buf.split(b"\r", 1)
                    with lock:
                        lines.append(line.lstrip(b"\n"))
                        n = len(lines)
                    reply = answer(line.lstrip(b"\n"), n)
                    if reply is not None:
                        self.request.sendall(reply)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        closing = False

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.lines = lines
    server.port = server.server_address[1]
    try:
        yield server
    finally:
        server.closing = True
        server.shutdown()
        server.server_close()


def frame(body: str) -> bytes:
    return f"\n{SIAEvent._crc_calc(body)}{len(body):04X}{body}\r".encode()


def pysia_answer(accounts: dict[str, str | None]):
    """pysiaalarm's own answer to a line (its parser and responder, without its sockets)."""
    server = BaseSIAServer({a: SIAAccount(a, k) for a, k in accounts.items()}, Counter())
    return lambda line: server.parse_and_check_event(line).create_response()


def free_port() -> int:
    """A loopback port nobody listens on: a receiver that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forwarder(receivers, outbox=None, fmt=dc09.SIA_DCS, keys=None, name="arc", log=None, **timing):
    route = Route(name, tuple(receivers), fmt, keys={"1234": KEY_B, "5678": KEY_B} if keys is None else keys,
                  **{**FAST, **timing})
    return Forwarder(outbox or MemoryOutbox(), [route], SITES, console_url="https://arc.example/console",
                     log=log if log is not None else (lambda line: None))


# -- every report, parsed and ACKed by the real receiver -------------------------------------
@pytest.mark.parametrize("fmt", [dc09.SIA_DCS, dc09.ADM_CID])
def test_every_alarm_and_technical_event_reaches_pysiaalarm_encrypted(fmt):
    with pysiaalarm({"1234": KEY, "5678": KEY}) as arc:
        fwd = forwarder([Receiver("primary", "127.0.0.1", arc.port)], fmt=fmt).start()
        try:
            sent = {event: fwd.alarm("dev-1", event, alarm_id=f"a{i:03d}") for i, event in enumerate(codes.CODES)}
            other = fwd.alarm("dev-2", "intrusion")
            wait_for(lambda: len(arc.of("1234")) == len(codes.CODES), what="every event at the receiver")
            wait_for(lambda: fwd.outbox.backlog("arc") == 0, what="every event acknowledged")
        finally:
            fwd.stop()
    by_seq = {e.sequence: e for e in arc.of("1234")}
    assert len(by_seq) == len(codes.CODES)                 # each once
    for i, (event, entry) in enumerate(sent.items()):
        got, code = by_seq[f"{entry.seq:04d}"], codes.CODES[event]
        assert got.encrypted and got.account == "1234"
        assert got.x_data == f"Vhttps://arc.example/console/alarms/dev-1/a{i:03d}"
        if fmt == dc09.SIA_DCS:
            assert (got.code, got.ri, got.message) == (code.sia, "1", "003")
        else:
            assert (got.event_qualifier, got.event_type, got.partition, got.ri) == \
                ("3" if code.restore else "1", f"{code.cid:03d}", "01", "003")
    (second,) = arc.of("5678")
    assert second.sequence == f"{other.seq:04d}"
    assert (second.code, second.ri if fmt == dc09.SIA_DCS else second.partition) == ("BA", "2" if fmt == dc09.SIA_DCS else "02")
    assert fwd.counters.get("acked", "arc") == len(codes.CODES) + 1
    assert fwd.counters.get("errors") == 0


def test_the_alarm_goes_out_at_once_and_the_photos_follow_up_with_the_link():
    with pysiaalarm({"1234": KEY}) as arc:
        # No poll in the hour: the follow-up, put after the alarm's ACK, goes out only because
        # the forwarder woke the transmitter (the alarm: that, or the thread's first pass).
        fwd = forwarder([Receiver("primary", "127.0.0.1", arc.port)], fmt=dc09.ADM_CID, poll_s=3600.0).start()
        try:
            alarm = fwd.alarm("dev-1", "intrusion", alarm_id="5f1c")
            wait_for(lambda: arc.of("1234"), what="the alarm")
            follow = fwd.verification("dev-1", "intrusion", alarm_id="5f1c")
            wait_for(lambda: len(arc.of("1234")) == 2, what="the verification follow-up")
        finally:
            fwd.stop()
    first, second = arc.of("1234")
    assert (first.sequence, first.event_qualifier, first.event_type) == (f"{alarm.seq:04d}", "1", "130")
    assert (second.sequence, second.event_qualifier, second.event_type) == (f"{follow.seq:04d}", "6", "130")
    assert second.x_data == "Vhttps://arc.example/console/alarms/dev-1/5f1c"
    assert follow.seq != alarm.seq


def test_null_supervision_reaches_every_receiver_of_the_pair():
    with pysiaalarm({"ABCD": KEY}) as primary, pysiaalarm({"ABCD": KEY}) as backup:
        route = Route("arc", (Receiver("primary", "127.0.0.1", primary.port), Receiver("backup", "127.0.0.1", backup.port)),
                      keys={"ABCD": KEY_B}, supervision=dc09.Account("ABCD"), **{**FAST, "null_interval_s": 0.3})
        fwd = Forwarder(MemoryOutbox(), [route], SITES).start()
        try:
            wait_for(lambda: len(primary.of("ABCD", null=True)) >= 3 and len(backup.of("ABCD", null=True)) >= 3,
                     what="three NULLs at each receiver")
        finally:
            fwd.stop()
    nulls = primary.of("ABCD", null=True)
    assert all(e.encrypted and e.message_type.value == "NULL" for e in nulls)
    assert len({e.sequence for e in nulls}) == len(nulls)
    assert fwd.counters.get("null_acked", "arc", "backup") >= 3 and fwd.counters.get("supervision_failed") == 0


def test_a_slow_gateway_clock_is_corrected_from_the_receivers_nak():
    lines = []
    with pysiaalarm({"1234": KEY}) as arc:
        route = Route("arc", (Receiver("primary", "127.0.0.1", arc.port),), keys={"1234": KEY_B}, **FAST)
        fwd = Forwarder(MemoryOutbox(), [route], SITES, clock=lambda: time.time() - 600, log=lines.append).start()
        try:
            entry = fwd.alarm("dev-1", "smoke")
            wait_for(lambda: arc.of("1234"), what="the alarm despite the clock")
            fwd.alarm("dev-1", "tamper")
            wait_for(lambda: len(arc.of("1234")) == 2, what="the next alarm, with the corrected clock")
        finally:
            fwd.stop()
    assert arc.of("1234")[0].sequence == f"{entry.seq:04d}"
    assert fwd.counters.get("nak", reason="clock") == 1          # once: the offset is kept
    assert any("NAK for our clock" in line and "NTP" in line for line in lines)


def test_over_udp_too():
    with pysiaalarm({"1234": KEY}, transport="udp") as arc:
        fwd = forwarder([Receiver("primary", "127.0.0.1", arc.port, transport="udp")]).start()
        try:
            entry = fwd.alarm("dev-1", "panic")
            wait_for(lambda: arc.of("1234"), what="the alarm over UDP")
            wait_for(lambda: fwd.outbox.backlog("arc") == 0, what="the ACK over UDP")
        finally:
            fwd.stop()
    assert (arc.of("1234")[0].code, arc.of("1234")[0].sequence) == ("PA", f"{entry.seq:04d}")


# -- faults: nothing lost, a clear reason, no receiver blocks another ---------------------------
def test_a_wrong_key_is_a_clear_error_and_the_alarm_waits_for_the_right_one():
    lines = []
    outbox = MemoryOutbox()
    with pysiaalarm({"1234": KEY}) as arc:
        wrong = forwarder([Receiver("primary", "127.0.0.1", arc.port)], outbox, keys={"1234": b"FEDCBA9876543210"},
                          log=lines.append).start()
        try:
            entry = wrong.alarm("dev-1", "duress")
            wait_for(lambda: wrong.counters.get("nak", reason="refused") >= 2, what="NAKs for the wrong key")
        finally:
            wrong.stop()
        assert arc.of("1234") == [] and outbox.backlog("arc") == 1
        assert any("check the key and the account 1234" in line for line in lines)
        assert not any("FEDCBA" in line or KEY in line for line in lines)      # keys are never logged

        fixed = forwarder([Receiver("primary", "127.0.0.1", arc.port)], outbox).start()
        try:
            wait_for(lambda: arc.of("1234"), what="the alarm once the key is right")
        finally:
            fixed.stop()
    (got,) = arc.of("1234")
    assert (got.code, got.sequence) == ("HA", f"{entry.seq:04d}")    # the number it was given at first
    assert outbox.backlog("arc") == 0


@pytest.mark.parametrize("refusal", ["NAK", "DUH"])
def test_a_refusing_receiver_gets_retries_with_the_same_number_until_it_acks(refusal):
    lines = []
    ack = pysia_answer({"1234": KEY})

    def answer(line, n):
        if n > 3:
            return ack(line)
        if refusal == "NAK":                  # a NAK with the receiver's clock, which agrees with ours
            return frame(f'"NAK"0000R0L0A0[]{dc09.format_timestamp(time.time())}')
        seq = SIAEvent.from_line(line.decode(), {"1234": SIAAccount("1234", KEY)}).sequence
        return frame(f'"DUH"{seq}L0#1234[]')

    with fake_receiver(answer) as arc:
        fwd = forwarder([Receiver("primary", "127.0.0.1", arc.port)], log=lines.append).start()
        try:
            entry = fwd.alarm("dev-1", "intrusion")
            wait_for(lambda: fwd.outbox.backlog("arc") == 0, what="the ACK after three refusals")
        finally:
            fwd.stop()
    seqs = [SIAEvent.from_line(line.decode(), {"1234": SIAAccount("1234", KEY)}).sequence for line in arc.lines]
    assert seqs == [f"{entry.seq:04d}"] * 4              # one number, four tries
    assert fwd.counters.get("nak" if refusal == "NAK" else "duh") == 3
    assert fwd.counters.get("retries", reason="refused") == 3
    assert any(("check the key" if refusal == "NAK" else "DUH: the receiver cannot process") in line for line in lines)
    assert any("kept in the outbox" in line for line in lines)


def test_garbage_from_the_primary_fails_over_to_the_backup():
    lines = []
    with fake_receiver(lambda line, n: b"HELLO I AM NOT A RECEIVER\r\n") as junk, pysiaalarm({"1234": KEY}) as backup:
        fwd = forwarder([Receiver("primary", "127.0.0.1", junk.port), Receiver("backup", "127.0.0.1", backup.port)],
                        log=lines.append).start()
        try:
            entry = fwd.alarm("dev-1", "intrusion")
            wait_for(lambda: backup.of("1234"), what="the alarm via the backup")
        finally:
            fwd.stop()
    assert backup.of("1234")[0].sequence == f"{entry.seq:04d}"
    assert fwd.outbox.acked_by(entry.id, "arc") == "backup"
    assert fwd.counters.get("errors", "arc", "primary", "garbage") == 1
    assert fwd.counters.get("failovers", "arc", "backup") == 1
    assert any("primary" in line and "garbage" in line and "hex CRC" in line for line in lines)


def test_primary_down_backup_up_delivers_through_the_backup_and_keeps_order():
    with pysiaalarm({"1234": KEY, "5678": KEY}) as backup:
        fwd = forwarder([Receiver("primary", "127.0.0.1", free_port()), Receiver("backup", "127.0.0.1", backup.port)]).start()
        try:
            entries = [fwd.alarm("dev-1", "intrusion"), fwd.alarm("dev-2", "smoke"), fwd.alarm("dev-1", "tamper")]
            wait_for(lambda: fwd.outbox.backlog("arc") == 0, what="every alarm via the backup")
        finally:
            fwd.stop()
    got = [e.sequence for e in backup.events]
    assert got == [f"{e.seq:04d}" for e in entries]
    assert {fwd.outbox.acked_by(e.id, "arc") for e in entries} == {"backup"}
    assert fwd.counters.get("errors", "arc", "primary", "refused") == 1   # then the backup goes first


def test_a_receiver_down_for_a_while_loses_nothing():
    port = free_port()
    fwd = forwarder([Receiver("primary", "127.0.0.1", port)])
    fwd.start()
    try:
        entries = [fwd.alarm("dev-1", "intrusion"), fwd.alarm("dev-1", "smoke")]
        wait_for(lambda: fwd.counters.get("errors", reason="refused") >= 3, what="some refused connections")
        assert fwd.outbox.backlog("arc") == 2
        # The receiver comes up on that port: everything is delivered, each once.
        client = SIAClient("127.0.0.1", port, [SIAAccount("1234", KEY)], lambda e: got.append(e))
        got: list = []
        client.start()
        try:
            wait_for(lambda: fwd.outbox.backlog("arc") == 0, what="the backlog delivered")
        finally:
            client.stop()
    finally:
        fwd.stop()
    assert sorted(e.sequence for e in got) == sorted(f"{e.seq:04d}" for e in entries)


def test_a_stalled_receiver_blocks_neither_another_receiver_nor_the_ingest():
    with fake_receiver(lambda line, n: None) as stalled, pysiaalarm({"1234": KEY}) as arc:
        routes = [Route("stalled", (Receiver("primary", "127.0.0.1", stalled.port),), keys={"1234": KEY_B},
                        **{**FAST, "ack_timeout_s": 30.0}),   # never reached: stop() cuts it short
                  Route("arc", (Receiver("primary", "127.0.0.1", arc.port),), keys={"1234": KEY_B}, **FAST)]
        lines = []
        fwd = Forwarder(MemoryOutbox(), routes, SITES, log=lines.append).start()
        try:
            for event in ("intrusion", "smoke", "panic"):    # the ingest's calls: none touches the network
                fwd.alarm("dev-1", event)
            wait_for(lambda: stalled.lines, what="the first alarm at the stalled receiver")
            wait_for(lambda: len(arc.of("1234")) == 3, timeout=20, what="the other route's alarms")
            # All three went through the other route while the stalled one still waits for its
            # answer: no timeout counted yet, nothing acknowledged there.
            assert fwd.counters.get("errors", "stalled") == 0 and fwd.outbox.backlog("stalled") == 3
        finally:
            fwd.stop()
    assert not any(t.is_alive() for t in fwd.transmitters[0]._threads)  # stopping cuts the stalled wait short
    assert fwd.counters.get("errors", "stalled", reason="timeout") == 0  # (not ended by the 30 s deadline)
    assert fwd.outbox.backlog("stalled") == 3                # and loses nothing
    assert len(stalled.lines) == 1                           # it holds only its own route


def test_after_a_restart_what_was_not_acked_goes_out_with_its_number(tmp_path):
    path = tmp_path / "dc09-outbox.jsonl"
    outbox = FileOutbox(path)
    down = forwarder([Receiver("primary", "127.0.0.1", free_port())], outbox)
    entries = [down.alarm("dev-1", "intrusion"), down.alarm("dev-2", "sos")]   # not started: nothing sent
    outbox.close()

    reopened = FileOutbox(path)                           # the gateway restarts
    assert [e.seq for e in reopened.entries()] == [e.seq for e in entries]
    with pysiaalarm({"1234": KEY, "5678": KEY}) as arc:
        up = forwarder([Receiver("primary", "127.0.0.1", arc.port)], reopened).start()
        try:
            wait_for(lambda: reopened.backlog("arc") == 0, what="the backlog after the restart")
            later = up.alarm("dev-1", "tamper")
            wait_for(lambda: len(arc.events) == 3, what="a new alarm after the restart")
        finally:
            up.stop()
    reopened.close()
    assert [e.sequence for e in arc.events] == [f"{e.seq:04d}" for e in entries + [later]]
    assert later.seq == entries[-1].seq + 1                 # numbering goes on after the restart
    compacted = FileOutbox(path, routes=["arc"])            # all acknowledged: nothing kept
    assert compacted.entries() == [] and compacted.put(replace(entries[0].report)).seq == later.seq + 1
    compacted.close()


def test_two_workers_on_one_outbox_forward_each_alarm_once():
    outbox = MemoryOutbox()
    with pysiaalarm({"1234": KEY, "5678": KEY}) as arc:
        workers = [forwarder([Receiver("primary", "127.0.0.1", arc.port)], outbox).start() for _ in range(2)]
        try:
            entries = [workers[i % 2].alarm("dev-1" if i % 3 else "dev-2", "intrusion") for i in range(12)]
            wait_for(lambda: outbox.backlog("arc") == 0, what="every alarm acknowledged")
        finally:
            for w in workers:
                w.stop()
    got = sorted(e.sequence for e in arc.events)
    assert got == sorted(f"{e.seq:04d}" for e in entries)    # each once: no duplicates, none lost
    assert sum(w.counters.get("sent") for w in workers) == 12


def test_a_stalled_backup_fails_its_supervision_and_holds_up_no_alarm():
    lines = []
    with fake_receiver(lambda line, n: None) as stalled, pysiaalarm({"1234": KEY, "ABCD": KEY}) as arc:
        route = Route("arc", (Receiver("primary", "127.0.0.1", arc.port), Receiver("backup", "127.0.0.1", stalled.port)),
                      keys={"1234": KEY_B, "ABCD": KEY_B}, supervision=dc09.Account("ABCD"),
                      **{**FAST, "null_interval_s": 0.2, "ack_timeout_s": 8.0})   # room for a loaded machine
        fwd = Forwarder(MemoryOutbox(), [route], SITES, log=lines.append).start()
        try:
            wait_for(lambda: stalled.lines, what="a NULL at the stalled backup")
            fwd.alarm("dev-1", "intrusion")
            wait_for(lambda: arc.of("1234"), what="the alarm through the primary")
            # ACKed while the backup's NULL still waits for its answer: no timeout counted yet.
            alarm_before_the_null_timed_out = fwd.counters.get("errors", "arc", "backup") == 0
            wait_for(lambda: fwd.counters.get("supervision_failed", "arc", "backup") >= 1, timeout=20,
                     what="the failed NULL")
        finally:
            fwd.stop()
    assert alarm_before_the_null_timed_out
    assert fwd.counters.get("errors", "arc", "backup", "timeout") >= 1
    assert fwd.counters.get("supervision_failed", "arc", "primary") == 0
    assert any("backup" in line and "supervision (NULL) failed" in line and "no answer within 8 s" in line
               for line in lines)
