"""Delivering reports to one receiver pair over DC-09: retries, failover, NULL supervision.

A `Route` is one destination at the ARC: a primary receiver and its backups (EN 50136 dual-path
reporting), one report format (SIA DCS or Contact ID) and the keys of the accounts. A
`Transmitter` serves one route with its own threads, so a receiver that is down, stalls or
answers garbage delays only its own route, and only by its timeouts:

- the delivery thread takes the entries handed to it (`hand`: put leased to it by the ingest,
  just committed) and then the due entries of the outbox (`Outbox.pending`), sends each to the
  primary, waits for the answer with a deadline, and on no ACK tries the backup. An entry no
  receiver acknowledged is given back to the outbox with a retry time (exponential backoff with
  jitter); it keeps its sequence number, and a fresh timestamp and pad on every try. After the
  primary fails, the backup goes first for `primary_retry_s`, then the primary is tried again.
- one supervision thread per receiver sends an (encrypted) NULL message when nothing has gone
  to that receiver for `null_interval_s`, on a connection of its own, so a supervision that
  stalls never holds up an alarm. Supervising the backup too is what lets the ARC learn that a
  path is down before it is needed.

What the receiver answers, and what the transmitter does (the answer is judged in `dc09`):

| answer                            | counted as                | then                                        |
|-----------------------------------|---------------------------|---------------------------------------------|
| ACK (or RSP)                      | `acked`                   | `mark_acked`; the link is healthy           |
| NAK with a clock > 10 s off ours  | `nak{reason="clock"}`     | correct our clock for it, resend once       |
| NAK otherwise                     | `nak{reason="refused"}`   | next receiver (wrong key? unknown account?) |
| DUH                               | `duh`                     | next receiver (it cannot process this one)  |
| no answer by the deadline         | `errors{reason="timeout"}`| close the connection, next receiver         |
| not a DC-09 answer to our message | `errors{reason="garbage"}`| close the connection, next receiver         |
| refused, reset, closed, no route  | `errors{reason=...}`      | next receiver                               |

When no receiver of the pair acknowledged an entry, it goes back to the outbox with a retry
time. If some receiver answered (NAK, DUH), only that entry waits (its own backoff) and the
next entries go on; if none could be reached, the pair is down and the whole batch waits, with
a backoff that grows while the pair stays down and resets on the first ACK.

Every outcome is counted (`Counters`) by route, receiver and reason, and logged in one line
that says what to check. Keys are never logged, and never leave this module except into AES.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from gateway.forward import codes, dc09
from gateway.forward.outbox import Entry, Outbox

CLOCK_TOLERANCE_S = 10.0     # a NAK whose receiver clock is further off than this is a clock NAK
MAX_ANSWER = 1024            # bytes: an "answer" longer than this without a CR is garbage
UNSENDABLE_RETRY_S = 3600.0  # a report that cannot be made into a message waits for a fix this long

_log = logging.getLogger("vericam.forward")


@dataclass(frozen=True)
class Receiver:
    """One alarm receiver at the ARC: where it listens, and over which transport."""
    name: str
    host: str
    port: int
    transport: str = "tcp"       # "tcp" or "udp"

    def __post_init__(self):
        if self.transport not in ("tcp", "udp"):
            raise ValueError(f"receiver {self.name}: transport must be tcp or udp, not {self.transport!r}")

    @property
    def where(self) -> str:
        return f"{self.name} {self.host}:{self.port}/{self.transport}"


@dataclass(frozen=True)
class Route:
    """One destination at the ARC: receivers in order (primary first), format, keys, timing.

    `keys` maps an account to its AES key (16, 24 or 32 bytes); an account not in it uses
    `default_key`; None sends it unencrypted. `supervision` is the account the NULL messages
    go out under (the gateway's own line at the receiver); None sends no NULL messages.
    """
    name: str
    receivers: tuple[Receiver, ...]
    format: str = dc09.SIA_DCS
    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    default_key: bytes | None = field(default=None, repr=False)
    supervision: dc09.Account | None = None
    null_interval_s: float = 60.0
    connect_timeout_s: float = 3.0
    ack_timeout_s: float = 5.0
    backoff_first_s: float = 0.5
    backoff_max_s: float = 30.0
    primary_retry_s: float = 30.0
    poll_s: float = 1.0          # how often the delivery thread looks for due entries unwoken

    def __post_init__(self):
        if not self.receivers:
            raise ValueError(f"route {self.name}: at least one receiver is needed")
        if self.format not in codes.FORMATS:
            raise ValueError(f"route {self.name}: format must be one of {codes.FORMATS}, not {self.format!r}")
        for account, key in self.keys.items():
            dc09.check_key(key)
        dc09.check_key(self.default_key)

    def key_for(self, account: str) -> bytes | None:
        """The account's key (accounts are hex: compared without regard to case), else the default."""
        if account in self.keys:
            return self.keys[account]
        for listed, key in self.keys.items():
            if listed.upper() == account.upper():
                return key
        return self.default_key


class Counters:
    """Counts by (name, route, receiver, reason); thread-safe; exported as Prometheus lines."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str, str, str], int] = {}

    def add(self, name: str, route: str, receiver: str = "", reason: str = "", n: int = 1) -> None:
        key = (name, route, receiver, reason)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + n

    def get(self, name: str, route: str | None = None, receiver: str | None = None,
            reason: str | None = None) -> int:
        """The sum over every label not given."""
        with self._lock:
            return sum(v for (n, ro, re_, rs), v in self._values.items()
                       if n == name and route in (None, ro) and receiver in (None, re_) and reason in (None, rs))

    def snapshot(self) -> dict[tuple[str, str, str, str], int]:
        with self._lock:
            return dict(self._values)

    def prometheus(self, prefix: str = "vericam_dc09") -> list[str]:
        lines = []
        for (name, route, receiver, reason), value in sorted(self.snapshot().items()):
            labels = [f'route="{route}"'] + ([f'receiver="{receiver}"'] if receiver else []) \
                + ([f'reason="{reason}"'] if reason else [])
            lines.append(f"{prefix}_{name}_total{{{','.join(labels)}}} {value}")
        return lines


class LinkError(Exception):
    """One exchange with one receiver failed; `reason` is the counter label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Link:
    """One connection to one receiver, used by one thread: send a message, read its answer.

    `offset_s` is how far that receiver's clock is ahead of ours (learnt from its NAKs); it is
    shared by the delivery and the supervision link of a receiver through `ReceiverState`.
    """

    def __init__(self, receiver: Receiver, state: "ReceiverState", connect_timeout_s: float,
                 ack_timeout_s: float, clock: Callable[[], float]):
        self.receiver = receiver
        self.state = state
        self.connect_timeout_s = connect_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.clock = clock
        self.sock: socket.socket | None = None
        self.aborted = False

    def abort(self) -> None:
        """From another thread: wake a blocked send or receive, and refuse further exchanges."""
        self.aborted = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def exchange(self, message: dc09.Message, key: bytes | None) -> tuple[dc09.Answer, bool]:
        """Send `message`, return the receiver's answer and whether our clock had to be corrected.

        Raises `LinkError`. A NAK that shows our clock is off is answered by resending once
        with the corrected time; the answer to that resend is returned.
        """
        answer = self._roundtrip(message, key)
        if answer.kind == dc09.NAK and answer.receiver_time is not None:
            skew = answer.receiver_time - (self.clock() + self.state.offset_s)
            if abs(skew) > CLOCK_TOLERANCE_S:
                self.state.offset_s += skew
                return self._roundtrip(message, key), True
        return answer, False

    def _roundtrip(self, message: dc09.Message, key: bytes | None) -> dc09.Answer:
        if self.aborted:
            raise LinkError("stopped", "the transmitter is stopping")
        raw = dc09.encode(message, key, self.clock() + self.state.offset_s)
        if self.receiver.transport == "udp":
            return self._udp(raw, message, key)
        reused = self.sock is not None
        try:
            return self._tcp(raw, message, key)
        except LinkError as exc:
            self.close()
            if reused and exc.reason == "closed" and not self.aborted:
                # The receiver dropped the idle connection we kept: one fresh connection.
                try:
                    return self._tcp(raw, message, key)
                except LinkError:
                    self.close()
                    raise
            raise

    def _connect(self) -> socket.socket:
        rcv = self.receiver
        try:
            sock = socket.create_connection((rcv.host, rcv.port), timeout=self.connect_timeout_s)
        except ConnectionRefusedError:
            raise LinkError("refused", "connection refused: is the receiver running and listening?") from None
        except socket.timeout:
            raise LinkError("timeout", f"no connection within {self.connect_timeout_s:g} s") from None
        except OSError as exc:
            raise LinkError("network", f"cannot connect: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _tcp(self, raw: bytes, message: dc09.Message, key: bytes | None) -> dc09.Answer:
        if self.sock is None:
            self.sock = self._connect()
        sock = self.sock
        deadline = time.monotonic() + self.ack_timeout_s
        buf = b""
        try:
            sock.settimeout(self.ack_timeout_s)
            sock.sendall(raw)
            while b"\r" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                sock.settimeout(left)
                chunk = sock.recv(MAX_ANSWER)
                if not chunk:
                    raise LinkError("closed", "the receiver closed the connection without answering")
                buf += chunk
                if len(buf) > MAX_ANSWER and b"\r" not in buf:
                    raise LinkError("garbage", f"{len(buf)} bytes and no CR: not a DC-09 answer")
        except socket.timeout:
            raise LinkError("timeout", f"no answer within {self.ack_timeout_s:g} s") from None
        except (ConnectionResetError, BrokenPipeError):
            raise LinkError("closed", "the receiver reset the connection") from None
        except OSError as exc:
            raise LinkError("network", str(exc.strerror or exc)) from None
        line = buf[:buf.index(b"\r") + 1]
        try:
            return dc09.read_answer(line, message, key)
        except dc09.DC09Error as exc:
            raise LinkError("garbage", str(exc)) from None

    def _udp(self, raw: bytes, message: dc09.Message, key: bytes | None) -> dc09.Answer:
        rcv = self.receiver
        if self.sock is None:
            try:
                self.sock = socket.socket(socket.AF_INET6 if ":" in rcv.host else socket.AF_INET, socket.SOCK_DGRAM)
                self.sock.connect((rcv.host, rcv.port))
            except OSError as exc:
                self.close()
                raise LinkError("network", f"cannot reach: {exc.strerror or exc}") from None
        sock = self.sock
        sock.setblocking(False)
        try:                                   # answers to an earlier try that came too late
            while sock.recv(MAX_ANSWER):
                pass
        except (BlockingIOError, OSError):
            pass
        deadline = time.monotonic() + self.ack_timeout_s
        last_error = None
        try:
            sock.settimeout(self.ack_timeout_s)
            sock.send(raw)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                sock.settimeout(left)
                datagram = sock.recv(MAX_ANSWER)
                try:
                    return dc09.read_answer(datagram, message, key)
                except dc09.BadAnswer as exc:    # a stray answer to another message: keep waiting
                    last_error = exc
                except dc09.DC09Error as exc:
                    raise LinkError("garbage", str(exc)) from None
        except socket.timeout:
            detail = f"no answer within {self.ack_timeout_s:g} s"
            raise LinkError("timeout", detail + (f" (ignored: {last_error})" if last_error else "")) from None
        except ConnectionRefusedError:
            self.close()
            raise LinkError("refused", "port unreachable: is the receiver listening on UDP?") from None
        except OSError as exc:
            self.close()
            raise LinkError("network", str(exc.strerror or exc)) from None


@dataclass
class ReceiverState:
    """What the route's threads share about one receiver."""
    offset_s: float = 0.0            # the receiver's clock minus ours, learnt from NAKs
    last_ok: float = 0.0             # monotonic time of the last answered exchange
    failed_at: float | None = None   # monotonic time of the last failed delivery, None once it works


class Transmitter:
    """Delivers the outbox's reports to one route (receiver pair), in its own threads.

    `start()` starts the threads, `wake()` tells the delivery thread that something was put in
    the outbox, `stop()` ends them. `deliver_due()` runs one delivery pass in the caller's thread
    (what the delivery thread runs in a loop). `on_ack(entry, receiver_name, acked_at)` is
    called after each acknowledged delivery (the benchmark times alarm-to-ACK with it).
    """

    def __init__(self, route: Route, outbox: Outbox, counters: Counters | None = None,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.time,
                 on_ack: Callable[[Entry, str, float], None] | None = None, batch: int = 20):
        self.route = route
        self.outbox = outbox
        self.counters = counters or Counters()
        self.log = log or _log.info
        self.clock = clock
        self.on_ack = on_ack
        self.batch = batch
        self.states = {r.name: ReceiverState() for r in route.receivers}
        self._links = {r.name: self._link(r) for r in route.receivers}
        self._failures = 0                 # consecutive passes in which nothing could be delivered
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._null_seq = {r.name: 0 for r in route.receivers}
        self._null_links: dict[str, Link] = {}
        self._handed: list[str] = []       # ids of entries put leased to us, to send first
        self._handed_lock = threading.Lock()

    @property
    def lease_s(self) -> float:
        """How long a lease of ours must last: a whole batch against receivers that all time out."""
        worst = len(self.route.receivers) * 2 * (self.route.connect_timeout_s + self.route.ack_timeout_s)
        return max(60.0, self.batch * worst)

    def _link(self, receiver: Receiver) -> Link:
        return Link(receiver, self.states[receiver.name], self.route.connect_timeout_s,
                    self.route.ack_timeout_s, self.clock)

    # -- threads --------------------------------------------------------------------------------
    def start(self) -> "Transmitter":
        self._stop.clear()
        self._threads = [threading.Thread(target=self._deliver_loop, name=f"dc09-{self.route.name}", daemon=True)]
        if self.route.supervision is not None and self.route.null_interval_s > 0:
            for rcv in self.route.receivers:
                self._threads.append(threading.Thread(target=self._supervise_loop, args=(rcv,),
                                                      name=f"dc09-{self.route.name}-{rcv.name}-null", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def hand(self, entry_ids: list[str]) -> None:
        """Entries put in the outbox leased to us, committed now: send them before anything else."""
        if entry_ids:
            with self._handed_lock:
                self._handed.extend(entry_ids)
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """End the threads; an exchange under way is cut short, and its entry stays in the outbox."""
        self._stop.set()
        self._wake.set()
        for link in list(self._links.values()) + list(self._null_links.values()):
            link.abort()
        for t in self._threads:
            t.join(timeout)
        for link in self._links.values():
            link.close()
        self._links = {r.name: self._link(r) for r in self.route.receivers}   # start() may follow
        handed = self._take_handed()
        if handed and hasattr(self.outbox, "claimed"):
            try:        # not sent: their leases end now, for another worker or our next start
                for entry in self.outbox.claimed(self.route.name, handed, self.clock()):
                    self.outbox.mark_attempt(entry.id, self.route.name, "not tried: transmitter stopping",
                                             self.clock())
            except Exception as exc:
                self.log(f"dc09 {self.route.name}: could not end the leases of {len(handed)} reports "
                         f"({type(exc).__name__}: {exc}); they run out on their own")

    def _deliver_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception as exc:          # the thread must outlive any bug in one pass
                self.counters.add("errors", self.route.name, reason="internal")
                self.log(f"dc09 {self.route.name}: delivery pass failed ({type(exc).__name__}: {exc}); "
                         "the entries stay in the outbox and are tried again")
            self._wake.wait(self.route.poll_s)
            self._wake.clear()

    def _supervise_loop(self, receiver: Receiver) -> None:
        link = self._null_links[receiver.name] = self._link(receiver)
        state = self.states[receiver.name]
        failed_at = float("-inf")
        try:
            while not self._stop.is_set():
                # Any answered exchange restarts the interval (DC-09 5.5.2); after a failed NULL
                # the next one waits an interval too: the receiver is down or stalled.
                due = max(state.last_ok, failed_at) + self.route.null_interval_s
                wait = due - time.monotonic()
                if wait > 0:
                    self._stop.wait(min(wait, self.route.null_interval_s))
                    continue
                if not self.send_null(receiver, link):
                    failed_at = time.monotonic()
        finally:
            link.close()

    # -- delivery -------------------------------------------------------------------------------
    def deliver_due(self) -> int:
        """Deliver every due entry; returns how many were acknowledged.

        When no receiver could be reached (timeouts, refused, garbage), the pair is down: the
        entry and the rest of the batch wait together, with a backoff that grows while it lasts.
        When a receiver answered but refused this one message (NAK, DUH), the link is fine:
        that entry waits with a backoff of its own and the others go on.
        """
        done, down = 0, False
        handed = self._take_handed()
        if handed and hasattr(self.outbox, "claimed"):
            done, down = self._deliver_entries(self._claim(handed))
        if self._stop.is_set() or down:
            return done
        due = self.outbox.pending(self.route.name, self.clock(), self.batch, lease_s=self.lease_s)
        return done + self._deliver_entries(due)[0]

    def _take_handed(self) -> list[str]:
        with self._handed_lock:
            handed, self._handed = self._handed, []
        return handed

    def _claim(self, handed: list[str]) -> list[Entry]:
        """The handed entries still ours to send (`Outbox.claimed`); on a database error they are
        handed back, to be tried on the next pass."""
        try:
            return self.outbox.claimed(self.route.name, handed, self.clock())
        except BaseException:
            with self._handed_lock:
                self._handed[:0] = handed
            raise

    def _deliver_entries(self, entries: list[Entry]) -> tuple[int, bool]:
        """Deliver entries leased to us, in order (see `deliver_due`): how many were acknowledged,
        and whether the pair is down (the rest of the entries then wait with the first)."""
        name = self.route.name
        done = 0
        for i, entry in enumerate(entries):
            if self._stop.is_set():
                for rest in entries[i:]:
                    self.outbox.mark_attempt(rest.id, name, "not tried: transmitter stopping", self.clock())
                break
            if entry.report.alarm_id is not None and self.outbox.waits_for_its_alarm(entry.id, name):
                # Handed straight here while its alarm still waits for a receiver: it goes after
                # the alarm, through `pending`, once the alarm is acknowledged.
                self.outbox.mark_attempt(entry.id, name, "waiting: its alarm is not acknowledged yet", self.clock())
                continue
            verdict, reasons = self._deliver(entry)
            if verdict == "acked":
                done += 1
                self._failures = 0
                continue
            outcome = "; ".join(reasons)
            if verdict == "unsendable":
                retry_at = self.clock() + UNSENDABLE_RETRY_S
            elif verdict == "refused":
                retry_at = self.clock() + self._backoff(entry.attempts + 1)
            else:
                self._failures += 1
                retry_at = self.clock() + self._backoff(self._failures)
            self.outbox.mark_attempt(entry.id, name, outcome, retry_at)
            self.counters.add("retries", name, reason=verdict)
            self.log(f"dc09 {name}: seq {entry.seq:04d} ({entry.report.event}, account "
                     f"{entry.report.account}) not delivered ({outcome}); kept in the outbox, "
                     f"next try in {retry_at - self.clock():.1f} s")
            if verdict == "unreachable":
                for rest in entries[i + 1:]:      # the pair is down: the rest wait with this one
                    self.outbox.mark_attempt(rest.id, name, "deferred: no receiver reachable", retry_at)
                return done, True
        return done, False

    def _backoff(self, failures: int) -> float:
        base = min(self.route.backoff_max_s, self.route.backoff_first_s * 2 ** min(max(failures, 1) - 1, 16))
        return base * random.uniform(0.8, 1.2)

    def _order(self) -> list[Receiver]:
        primary, *backups = self.route.receivers
        failed = self.states[primary.name].failed_at
        if backups and failed is not None and time.monotonic() - failed < self.route.primary_retry_s:
            return backups + [primary]
        return [primary] + backups

    def message_for(self, entry: Entry) -> tuple[dc09.Message, bytes | None]:
        """The DC-09 message for an outbox entry on this route, and the key to encrypt it with."""
        rep = entry.report
        account = dc09.Account(rep.account, rep.prefix, rep.receiver)
        data = codes.event_data(self.route.format, rep.account, rep.event, rep.area, rep.zone, rep.follow_up)
        xdata = (("V", rep.link),) if rep.link else ()
        return dc09.Message(self.route.format, entry.seq, account, data, xdata), self.route.key_for(rep.account)

    def _deliver(self, entry: Entry) -> tuple[str, list[str]]:
        """Try the receivers in order. Returns ("acked", []) or the verdict and each receiver's reason:
        "refused" if some receiver answered NAK/DUH, "unreachable" if none answered at all,
        "unsendable" if the report cannot be made into a message."""
        name = self.route.name
        try:
            message, key = self.message_for(entry)
        except (dc09.DC09Error, codes.UnmappedEvent) as exc:
            self.counters.add("errors", name, reason="bad_report")
            return "unsendable", [f"report cannot be sent: {exc}"]
        reasons, answered = [], False
        for rcv in self._order():
            started = time.monotonic()
            state = self.states[rcv.name]
            kind, detail = self._exchange(self._links[rcv.name], message, key)
            if kind == "ack":
                acked_at = self.clock()
                self.outbox.mark_acked(entry.id, name, rcv.name, acked_at)
                state.failed_at = None
                self.counters.add("delivered", name, rcv.name)
                if rcv is not self.route.receivers[0]:
                    self.counters.add("failovers", name, rcv.name)
                self.log(f"dc09 {name}/{rcv.name}: seq {message.seq:04d} {entry.report.event} account "
                         f"{message.account.account} zone {entry.report.zone} ACKed in "
                         f"{(time.monotonic() - started) * 1000:.0f} ms")
                if self.on_ack is not None:
                    self.on_ack(entry, rcv.name, acked_at)
                return "acked", []
            answered = answered or kind == "answered"
            state.failed_at = time.monotonic()
            reasons.append(f"{rcv.name}: {detail}")
        return ("refused" if answered else "unreachable"), reasons

    def _exchange(self, link: Link, message: dc09.Message, key: bytes | None) -> tuple[str, str]:
        """One message to one receiver, counted and logged.

        Returns ("ack", ""), ("answered", why) for a NAK or DUH, or ("link", why) when the
        receiver could not be reached or did not answer sensibly."""
        name, rcv = self.route.name, link.receiver
        null = message.token == dc09.NULL
        self.counters.add("null_sent" if null else "sent", name, rcv.name)
        try:
            answer, resynced = link.exchange(message, key)
        except LinkError as exc:
            self.counters.add("errors", name, rcv.name, exc.reason)
            self.log(f"dc09 {name}/{rcv.where}: seq {message.seq:04d} {message.token}: {exc}")
            return "link", str(exc)
        if resynced:
            self.counters.add("nak", name, rcv.name, "clock")
            self.log(f"dc09 {name}/{rcv.where}: NAK for our clock; now sending with the receiver's "
                     f"time ({link.state.offset_s:+.0f} s); check the gateway's NTP")
        if answer.delivered:
            link.state.last_ok = time.monotonic()
            self.counters.add("null_acked" if null else "acked", name, rcv.name)
            return "ack", ""
        if answer.kind == dc09.NAK:
            self.counters.add("nak", name, rcv.name, "refused")
            detail = ("NAK although our clocks agree: check the key and the account "
                      f"{message.account.account} at the receiver")
        else:
            self.counters.add("duh", name, rcv.name)
            detail = (f"DUH: the receiver cannot process this {message.token} message: check that it "
                      f"knows account {message.account.account} and the event code")
        self.log(f"dc09 {name}/{rcv.where}: seq {message.seq:04d}: {detail}")
        return "answered", detail

    # -- supervision ----------------------------------------------------------------------------
    def send_null(self, receiver: Receiver, link: Link | None = None) -> bool:
        """One NULL (link test) to `receiver`; True if it was acknowledged."""
        account = self.route.supervision
        if account is None:
            return False
        self._null_seq[receiver.name] = dc09.next_seq(self._null_seq[receiver.name])
        message = dc09.Message(dc09.NULL, self._null_seq[receiver.name], account)
        own = link is None
        link = link or self._link(receiver)
        try:
            kind, detail = self._exchange(link, message, self.route.key_for(account.account))
        finally:
            if own:
                link.close()
        if kind == "ack":
            return True
        self.counters.add("supervision_failed", self.route.name, receiver.name)
        self.log(f"dc09 {self.route.name}/{receiver.where}: supervision (NULL) failed: {detail}; "
                 "the ARC will see this path as faulty until it answers again")
        return False
