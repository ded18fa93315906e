"""DC-09 benchmark: from the panel's alarm to the ARC receiver's ACK, against a bare DC-09 message to the same receiver.

The receiver is the real thing an ARC might run: pysiaalarm (the SIA receiver Home Assistant
uses), encryption on, on a loopback port behind the simulator's `NetProxy`, so tests can take
it down (`ArcReceiver`). The rest is the full stack: Mosquitto, the gateway process with
`--dc09`, and the device on real MicroPython with its simulated panel.

Each round arms the panel and opens an instant zone: the intrusion alarm fires at once. The
timer runs from that panel event on the device's side (`Stack.alarm_sent_ms`: when the
simulated panel puts it on the bus, before the firmware sees it) to the moment the receiver
ACKed the gateway's intrusion report (pysiaalarm answers before it hands the event on; same
host clock).
Then the round waits for the photos and the follow-up, and disarms (which the gateway reports
too, as a cancel) before the next. The baseline, measured between the rounds in the same run,
is one bare DC-09 message (the same kind of intrusion report, encrypted, on a kept connection)
sent to the same receiver by the gateway's own `Link`: the floor for the DC-09 leg.

The device's MQTT hop is reported apart, since the goal of issue 16 is p95 alarm-to-ACK within
2 x baseline + that hop. It ends where the gateway's work begins: when the broker delivers the
alarm's message, as seen by an observer subscribed to the device's event topic beside the
gateway (the first event message after the panel's alarm; the firmware sends nothing else on
that topic before it). It is not the moment the gateway stored the alarm: that would count the
gateway's own queueing and batching as the device's. `gateway_to_ack_ms` is the rest, per
alarm: the gateway's part and the DC-09 leg.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from simulator.broker import WireObserver
from simulator.netproxy import NetProxy

ACCOUNT = "1234"                       # the simulated panel's account at the ARC
BASELINE_ACCOUNT = "9999"              # the bare messages' account, so they are never counted as alarms
KEY = "Vericam-DC09-bench-key-32-bytes!"   # pysiaalarm takes 16/24/32 characters as the AES key
DEVICE = "bench-dc09"
PIN = "2580"


class ArcReceiver:
    """pysiaalarm's threaded receiver on loopback, behind a proxy that can take it down.

    `accounts` maps each account to its key as pysiaalarm takes it (16, 24 or 32 characters;
    None: unencrypted). `where` is the HOST:PORT to give the gateway. Every message it parsed
    and ACKed is in `events` as (unix time of the ACK, SIAEvent). `down()` resets every
    connection and refuses new ones until `up()`: the receiver is unreachable, as when its
    process or its network is down.
    """

    def __init__(self, accounts: dict[str, str | None]):
        self.accounts = dict(accounts)
        self.events: list[tuple[float, object]] = []
        self._lock = threading.Lock()
        self._client = None
        self.proxy: NetProxy | None = None

    def start(self) -> "ArcReceiver":
        try:
            from pysiaalarm import SIAAccount, SIAClient
        except ImportError:
            raise RuntimeError("pysiaalarm is not installed: pip install -e '.[dev]' (it plays the ARC's receiver)") from None
        self._client = SIAClient("127.0.0.1", 0, [SIAAccount(a, k) for a, k in self.accounts.items()], self._on_event)
        port = self._client.sia_server.server_address[1]
        self._client.start()
        self.proxy = NetProxy("127.0.0.1", port, name="arc-receiver")
        return self

    def _on_event(self, event) -> None:
        with self._lock:
            self.events.append((time.time(), event))

    @property
    def where(self) -> str:
        return f"{self.proxy.host}:{self.proxy.port}"

    def of(self, account: str) -> list:
        """The events of `account` it ACKed, NULL messages left out, in the order received."""
        with self._lock:
            return [e for _t, e in self.events if e.account == account and e.code != "RP"]

    def timed(self, account: str) -> list[tuple[float, object]]:
        """(unix time of the ACK, SIAEvent) of every message of `account` it ACKed, in order."""
        with self._lock:
            return [(t, e) for t, e in self.events if e.account == account]

    def acked_at(self, account: str, sequence: int) -> list[float]:
        """When it ACKed each message of `account` with this sequence number (one time per copy)."""
        with self._lock:
            return [t for t, e in self.events if e.account == account and e.sequence == f"{sequence:04d}"]

    def set_accounts(self, accounts: dict[str, str | None]) -> None:
        """Change the accounts and keys it knows, as it runs (the ARC fixing its configuration)."""
        from pysiaalarm import SIAAccount

        self.accounts = dict(accounts)
        self._client.accounts = [SIAAccount(a, k) for a, k in self.accounts.items()]

    def down(self) -> None:
        self.proxy.cut("reset")

    def up(self) -> None:
        self.proxy.restore()

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        if self._client is not None:
            self._client.stop()

    def __enter__(self) -> "ArcReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def write_key_file(path: Path, keys: dict[str, str]) -> Path:
    """The gateway's DC-09 key file (mode 0600) for pysiaalarm keys: `ACCOUNT ascii:KEY`, `*` for every account."""
    lines = [f"ascii:{key}" if account == "*" else f"{account} ascii:{key}" for account, key in keys.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# DC-09 keys of the ARC's receiver (bench)\n" + "\n".join(lines) + "\n")
    return Path(path)


def percentile(values: list[float], p: float) -> float | None:
    s = sorted(values)
    if not s:
        return None
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _p(values: list[float]) -> dict:
    return {"p50": _round(percentile(values, 50)), "p95": _round(percentile(values, 95)), "n": len(values)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


class BareSender:
    """Bare DC-09 messages to the receiver: the gateway's own framing, key and `Link`, nothing else."""

    def __init__(self, where: str, key: bytes):
        from gateway.forward import codes, dc09
        from gateway.forward.config import receivers_from_spec
        from gateway.forward.transmitter import Link, ReceiverState

        self.dc09, self.codes = dc09, codes
        (receiver,) = receivers_from_spec(where)
        self.key = key
        self.link = Link(receiver, ReceiverState(), connect_timeout_s=3.0, ack_timeout_s=5.0, clock=time.time)
        self.seq = 0

    def send_ms(self) -> float:
        """One intrusion report under BASELINE_ACCOUNT; milliseconds until its ACK."""
        dc09 = self.dc09
        self.seq = dc09.next_seq(self.seq)
        data = self.codes.event_data(dc09.SIA_DCS, BASELINE_ACCOUNT, "intrusion", 1, 1)
        message = dc09.Message(dc09.SIA_DCS, self.seq, dc09.Account(BASELINE_ACCOUNT), data)
        t0 = time.perf_counter()
        answer, _ = self.link.exchange(message, self.key)
        elapsed = (time.perf_counter() - t0) * 1000
        if not answer.delivered:
            raise RuntimeError(f"the receiver answered the bare message with {answer.kind}")
        return elapsed

    def close(self) -> None:
        self.link.close()


def run_dc09(alarms: int = 10, workdir: str | Path | None = None,
             progress: Callable[[int, int], None] | None = None, timeout_s: float = 30.0) -> dict:
    """Play `alarms` intrusion alarms through the full stack to pysiaalarm; the figures (module docstring)."""
    from gateway.forward.config import Settings

    from simulator.device import DeviceError
    from simulator.stack import Stack

    tmp = Path(tempfile.mkdtemp(prefix="vericam-dc09-")) if workdir is None else Path(workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    key_file = write_key_file(tmp / "dc09.keys", {"*": KEY})
    alarm_to_ack, alarm_to_event, event_to_ack, baseline, hop, after_hop = [], [], [], [], [], []
    acked = acked_before_photos = duplicates = 0
    with ArcReceiver({ACCOUNT: KEY, BASELINE_ACCOUNT: KEY}) as arc:
        settings = Settings(arc.where, str(key_file), console_url="http://127.0.0.1:8080", backoff_max_s=2.0)
        bare = BareSender(arc.where, KEY.encode())
        with Stack(tmp / "run", dc09=settings, dc09_account=ACCOUNT, keep=workdir is not None) as stack:
            dev = stack.add_device(DEVICE, panel_kwargs={"exit_delay_s": 0.3, "entry_delay_s": 0.3})
            panel = stack.panels[DEVICE]
            observer = WireObserver(stack.broker, t0=0.0, topic=f"vc/v1/{DEVICE}/up/event")
            dev.boot()
            dev.wait_trace("online", timeout=20)
            bare.send_ms()                                # the connection is kept open, as the gateway's is
            for i in range(alarms):
                baseline.append(bare.send_ms())
                seen, queued = len(arc.timed(ACCOUNT)), len(stack.dc09_reports())
                panel.arm(PIN, mode="away")
                time.sleep(panel.exit_delay_s + 0.2)
                panel.open_zone("window-1")               # an instant zone: the alarm fires now
                alarm_ms = _wait(lambda: len(stack.alarm_sent_ms.get(DEVICE, [])) > i, timeout_s) \
                    and stack.alarm_sent_ms[DEVICE][i]
                # The first intrusion report the receiver ACKs after the alarm (watched in memory).
                first = _wait(lambda: next(((t, e) for t, e in arc.timed(ACCOUNT)[seen:] if e.code == "BA"), None),
                              timeout_s, poll_s=0.001)
                # The round ends when the photos' follow-up is acknowledged; then the panel is disarmed.
                _wait(lambda: any(r["follow_up"] and r["acked_by"] for r in stack.dc09_reports()[queued:]),
                      timeout_s, poll_s=0.1)
                panel.disarm(PIN)
                try:          # the disarm photos are sealed and held before the next round
                    dev.wait_trace("held", i + 1, timeout=timeout_s)
                except DeviceError:
                    pass
                reports = stack.wait_dc09_acked(0, timeout=timeout_s)[queued:]
                report = next((r for r in reports if r["event"] == "intrusion" and not r["follow_up"]), None)
                if alarm_ms and first and report and first[1].sequence == f"{report['seq']:04d}" and report["acked_by"]:
                    acked += 1
                    duplicates += len(arc.acked_at(ACCOUNT, report["seq"])) - 1
                    ack_ms = first[0] * 1000
                    alarm_to_ack.append(ack_ms - alarm_ms)
                    delivered_ms = next((r["t"] * 1000 for r in observer.snapshot() if r["t"] * 1000 >= alarm_ms), None)
                    if delivered_ms is not None:
                        hop.append(delivered_ms - alarm_ms)
                        after_hop.append(ack_ms - delivered_ms)
                    row = _alarm_row(stack, report)
                    if row:
                        alarm_to_event.append(row["received_at_ms"] - alarm_ms)
                        event_to_ack.append(ack_ms - row["received_at_ms"])
                        if row["first_stored_at_ms"] and ack_ms < row["first_stored_at_ms"]:
                            acked_before_photos += 1
                if progress:
                    progress(i + 1, alarms)
            dev.stop()
            observer.close()
        bare.close()
    hop_p95 = percentile(hop, 95)
    base_p50 = percentile(baseline, 50)
    ack_p95 = percentile(alarm_to_ack, 95)
    goal = None if base_p50 is None or hop_p95 is None else 2 * base_p50 + hop_p95
    from importlib.metadata import version

    return {
        "alarms": alarms,
        "acked": acked,
        "lost": alarms - acked,
        "duplicates_at_receiver": duplicates,
        "alarm_to_ack_ms": _p(alarm_to_ack),
        "baseline_ms": _round(base_p50),
        "baseline_ms_p95": _round(percentile(baseline, 95)),
        "ratio_p95_to_baseline": None if not base_p50 or ack_p95 is None else round(ack_p95 / base_p50, 2),
        "mqtt_hop_ms": _p(hop),
        "gateway_to_ack_ms": _p(after_hop),
        "alarm_to_event_stored_ms": _p(alarm_to_event),
        "event_stored_to_ack_ms": _p(event_to_ack),
        "goal_ms": _round(goal),
        "within_goal": None if goal is None or ack_p95 is None else ack_p95 <= goal,
        "acked_before_photos_stored": acked_before_photos,
        "receiver": f"pysiaalarm {version('pysiaalarm')}",
        "format": "SIA-DCS, AES-256",
        "mean_alarm_to_ack_ms": _round(statistics.fmean(alarm_to_ack)) if alarm_to_ack else None,
    }


def _alarm_row(stack, report: dict) -> dict | None:
    """The gateway's row of the alarm a report is about (received_at_ms, first_stored_at_ms, ...)."""
    with stack.store() as s:
        return next((a for a in s.alarms.list(report["device"]) if a["alarm_id"] == report.get("alarm_id")), None)


def _wait(get, timeout_s: float, poll_s: float = 0.01):
    deadline = time.monotonic() + timeout_s
    while True:
        value = get()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(poll_s)
