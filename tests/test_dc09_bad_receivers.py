"""A receiver that answers garbage, has the wrong key or stalls: a clear log line, a metric, and nothing held up.

The running gateway (`Gateway` with `--dc09` settings, a real Mosquitto) reports to a primary
receiver that misbehaves and a backup that works (pysiaalarm, AES-256). For each misbehaviour:
the gateway's log names the receiver, the reason and what to check; its `/metrics` counts it
under that receiver and reason; the alarm still reaches the ARC through the backup, once; and
the photos that follow the alarm are stored and receipted while the primary is still failing,
so the ingest waits for no receiver.
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
import urllib.request

import pytest

from gateway.forward.config import Settings
from gateway.ingest.service import Gateway
from gateway.protocol import envelope as env
from gateway.provisioning.dc09 import set_account
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.bench.dc09 import ArcReceiver, write_key_file
from simulator.fake_device import FakeDevice
from support.link import DeviceLink

pytestmark = pytest.mark.timeout(90)

ACCOUNT = "1234"
KEY = "0123456789ABCDEF0123456789ABCDEF"       # pysiaalarm: 32 characters, AES-256
AID = "5f1c00aa11bb22cc"


class Misbehaving:
    """A TCP 'receiver' that answers each line with `answer` (bytes), or holds it unanswered (None)."""

    def __init__(self, answer: bytes | None):
        self.lines: list[bytes] = []
        self.release = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                buf = b""
                self.request.settimeout(0.2)
                while not outer.release.is_set():
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
                        outer.lines.append(line)
                        if answer is not None:
                            self.request.sendall(answer)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def counter(text: str, name: str, **labels) -> float:
    """The value of counter `name` with exactly these labels (0 if it is not there yet)."""
    want = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(name + want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


CASES = {
    # name: (the primary, the counter and reason it must show, what its log line must say)
    "garbage": (lambda backup: Misbehaving(b"HELLO I AM NOT A RECEIVER\r\n"),
                ("vericam_dc09_errors_total", "garbage"), "garbage"),
    "wrong key": (lambda backup: ArcReceiver({ACCOUNT: KEY[::-1]}).start(),
                  ("vericam_dc09_nak_total", "refused"), "check the key and the account 1234"),
    "stalled": (lambda backup: Misbehaving(None),
                ("vericam_dc09_errors_total", "timeout"), "timeout: no answer within 15 s"),
}
# The stalled primary is given 15 s to answer, not the default 5: the test checks that the
# photos are stored and receipted while the primary still holds the alarm, and a machine
# running three test workers on two cores must not be able to make that a race.
ACK_TIMEOUT_S = {"stalled": 15.0}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_primary_is_logged_and_counted_and_holds_up_neither_the_backup_nor_the_ingest(case, tmp_path, broker):
    make_primary, (metric, reason), says = CASES[case]
    data = tmp_path / "gw"
    init_arc(data)
    device = FakeDevice(add_device(data, "cam-1", "site-a"), chunk_size=4096)
    with Store.open(data) as store:
        set_account(store, "cam-1", ACCOUNT, zone=3)
    keys = write_key_file(tmp_path / "dc09.keys", {"*": KEY})
    lines: list[str] = []
    with ArcReceiver({ACCOUNT: KEY}) as backup:
        primary = make_primary(backup)
        where = primary.where if isinstance(primary, ArcReceiver) else f"127.0.0.1:{primary.port}"
        settings = Settings(f"{where},{backup.where}", str(keys), console_url="https://arc.example", backoff_max_s=1.0,
                            ack_timeout_s=ACK_TIMEOUT_S.get(case, 5.0))
        try:
            with Gateway(data, broker.host, broker.port, metrics_port=0, dc09=settings, log=lines.append) as gw:
                port = gw._metrics_server.port
                link = DeviceLink(broker, device)
                try:
                    link.send([device.event({"kind": "alarm", "code": "intrusion", "alarm_id": AID,
                                             "t": int(time.time()), "event_id": os.urandom(8).hex()})])
                    # The primary now holds or refuses the alarm; the photos go in meanwhile.
                    wait_for(lambda: primary.lines if isinstance(primary, Misbehaving) else True, 20,
                             "the alarm at the bad primary")
                    cid, sealed = device.seal([b"\xff\xd8" + os.urandom(3000) + b"\xff\xd9"])
                    link.send(device.chunk_messages(cid, sealed, bytes.fromhex(AID)))
                    assert link.next_downlink(timeout=20)[1] == env.RECEIPT_STORED
                    if case == "stalled":        # stored and receipted while the primary still holds the alarm
                        assert counter(scrape(port), metric, route="arc", receiver="primary", reason=reason) == 0
                    # The alarm and then its follow-up reach the ARC through the backup.
                    got = wait_for(lambda: len(backup.of(ACCOUNT)) >= 2 and backup.of(ACCOUNT), 60,
                                   "the alarm and its follow-up at the backup")
                    metrics = wait_for(lambda: (lambda t: counter(t, metric, route="arc", receiver="primary",
                                                                  reason=reason) >= 1 and t)(scrape(port)),
                                       40, f"{metric} for the primary")
                finally:
                    link.close()
            got = backup.of(ACCOUNT)                # the gateway stopped: all it ever sent the backup
        finally:
            primary.close()
    assert [e.code for e in got] == ["BA", "BA"]
    assert len({e.sequence for e in got}) == 2                          # each once
    assert counter(metrics, "vericam_dc09_acked_total", route="arc", receiver="backup") >= 2
    assert counter(metrics, "vericam_dc09_failovers_total", route="arc", receiver="backup") >= 2
    assert any(f"dc09 arc/primary 127.0.0.1:" in line and says in line for line in lines), \
        [line for line in lines if "dc09" in line]
    assert not any(KEY in line or KEY[::-1] in line for line in lines)  # keys are never logged
