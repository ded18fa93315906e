"""Resilient asyncio MQTT 3.1.1 client: supervisor, reconnect, resubscribe, QoS-1 retransmit.

Theory of operation
-------------------
`run()` is the supervisor. It connects (nonblocking TCP with a deadline, optional TLS,
CONNECT/CONNACK), starts two tasks for that connection and waits until either declares it
dead; then it closes the socket, sets `down`, sleeps an exponential backoff with jitter and
tries again. The tasks are:
- the reader, the only task that reads the socket: it feeds the codec's Decoder and
  dispatches PUBACK, SUBACK, PINGRESP and incoming PUBLISH (to `on_message`);
- the ticker: keepalive PINGREQ, the PINGRESP deadline, and our own QoS-1 retransmit.
  A PUBACK overdue by `ack_timeout_ms` first makes the ticker probe the link with a
  PINGREQ. No answer within `ack_timeout_ms` more: the connection is dead (a pulled
  cable gives no error, only silence), and the message goes again on the next
  connection. An answer: the broker is alive but lost the message, which is sent again
  with DUP on this connection. Resending into a silent TCP connection would only pile
  duplicates up behind the outage and cost a slow link their bytes after it.
Writers (publishers, the reader's PUBACKs, the ticker) share the socket under one lock;
each packet goes out whole under the lock, and every write has a deadline: a write that
cannot finish marks the connection dead rather than blocking forever.

QoS-1 messages live in `_inflight` (at most `max_inflight`) from their first send until
PUBACK. After a reconnect every one of them is sent again before `up` is set: with DUP if
the broker kept our session, as new messages if clean_session=True (the broker forgot
them). The payload is never copied: the caller's object is written from a memoryview.
Delivery is therefore at least once; the receiver deduplicates.

A message may have a shelf life: `publish(..., expired=callable)`. The callable is asked
before every write of the message (its first, the resend after a reconnect, a DUP
retransmit); once it returns true the message is withdrawn unsent and `publish` raises
MQTTExpired. The client has no idea of what makes a message old; the caller does (the
agent: an envelope stamped too long ago for the gateway's freshness rule, see
docs/PROTOCOL.md section 3), and re-seals and publishes its data again.

The last will may be a callable: it is then called before every CONNECT and its
(topic, payload, retain, qos) registered for that connection only, so a will can carry
a fresh counter each time (docs/PROTOCOL.md section 7).
"""

import asyncio
import os
import socket
import time

from . import codec
from .codec import MQTTError

try:
    from errno import EINPROGRESS, EAGAIN
except ImportError:  # pragma: no cover - every port we know has errno
    EINPROGRESS, EAGAIN = 115, 11

# Linux/lwIP values; the unix port has no socket.IPPROTO_TCP constant.
_IPPROTO_TCP = getattr(socket, "IPPROTO_TCP", 6)
_TCP_NODELAY = getattr(socket, "TCP_NODELAY", 1)

_TICK_MS = 50  # ticker period: resolution of retransmit and keepalive deadlines

DEFAULTS = {
    "host": "127.0.0.1",
    "port": 1883,
    "client_id": "vericam",
    "user": None,
    "password": None,
    "keepalive_s": 60,
    "clean_session": True,
    "will": None,  # (topic, payload, retain, qos), or a callable returning one per connect
    "ssl": None,  # a tls.SSLContext, or None for plain TCP
    "server_hostname": None,  # TLS SNI / certificate name; defaults to host
    "ack_timeout_ms": 5000,
    "max_inflight": 8,
    "connect_timeout_ms": 5000,
    "backoff_min_ms": 250,
    "backoff_max_ms": 30000,
    "max_packet": 16384,  # cap on an incoming packet
    "rx_buf": 1024,  # size of the reader's reusable receive buffer
}


class MQTTTimeout(MQTTError):
    """A publish did not complete before its timeout. The caller still owns the message."""


class MQTTExpired(MQTTTimeout):
    """The message's `expired` check said it is too old to send; withdrawn. The caller still owns it."""


class MQTTDisconnected(MQTTError):
    """The client was shut down with `disconnect()` while the operation was pending."""


class _ConnectionDead(Exception):
    pass


def _writable(sock):
    # Wait until the socket can take more bytes, the way asyncio's own Stream.drain() does
    # (extmod/asyncio/stream.py). Waiting here instead of using Stream.write() avoids its
    # copy of the unsent rest of a large payload into a new bytes object.
    yield asyncio.core._io_queue.queue_write(sock)


def _readable(sock):
    yield asyncio.core._io_queue.queue_read(sock)


def _rand(n):
    # A random integer in 0..n-1 for jitter (os.urandom is the HAL-free RNG on every port).
    if n <= 0:
        return 0
    r = os.urandom(4)
    return ((r[0] << 24) | (r[1] << 16) | (r[2] << 8) | r[3]) % n


class _Outgoing:
    """One QoS-1 message between its first send and its PUBACK."""

    def __init__(self, pid, topic, payload, retain, expired=None):
        self.pid = pid
        self.expired = expired  # callable -> bool: asked before every write, see the module docstring
        self.topic = topic
        self.payload = payload
        self.retain = retain
        self.sent = None  # ticks_ms of the last send, None until sent on this connection
        self.tries = 0  # sends so far, over all connections
        self.dup = False
        self.probe = None  # ticks_ms of the PINGREQ that asked whether the link still lives
        self.done = asyncio.Event()
        self.error = None


class MQTTClient:
    """See the module docstring. `config` overrides DEFAULTS."""

    def __init__(self, config, on_message=None, log=None):
        cfg = dict(DEFAULTS)
        for k in config:
            if k not in DEFAULTS:
                raise ValueError("unknown MQTT config key %r (known: %s)" % (k, ", ".join(DEFAULTS)))
            cfg[k] = config[k]
        if cfg["max_inflight"] < 1:
            raise ValueError("max_inflight must be at least 1")
        self.config = cfg
        self.on_message = on_message
        self._log = log
        self.up = asyncio.Event()
        self.down = asyncio.Event()
        self.down.set()
        self._subs = {}  # topic filter -> qos, reapplied on every connect
        self._inflight = []  # _Outgoing, in first-send order (a list: max_inflight is small)
        self._slot_free = asyncio.Event()
        self._wlock = asyncio.Lock()
        self._sock = None
        self._dead = asyncio.Event()
        self._decoder = codec.Decoder(cfg["max_packet"])
        self._rxbuf = bytearray(cfg["rx_buf"])
        self._pid = 0
        self._running = False
        self._closed = False  # set by disconnect(): pending and new operations fail
        self._tasks = []  # reader and ticker of the current connection
        self._stopped = asyncio.Event()
        self._suback = None  # (pid, Event, [Suback]) while a SUBSCRIBE awaits its SUBACK
        self._ping_sent = None
        self._last_ping = 0
        self.connects = 0  # successful connections so far
        self.retransmits = 0  # QoS-1 sends with DUP after an ack timeout

    # -----------------------------------------------------------------------------------
    # Public API

    def subscribe(self, topic, qos=1):
        """Record a subscription; it is applied on this and every later connection."""
        codec.subscribe(1, [(topic, qos)])  # validate now, not at connect time
        self._subs[topic] = qos
        if self.up.is_set():
            # Apply it on the live connection too; the reader logs a refusal.
            asyncio.create_task(self._send_subscribe_now(topic, qos))

    async def publish(self, topic, payload, qos=1, retain=False, timeout_ms=None, expired=None):
        """Send one message. For QoS 1 return once the broker's PUBACK arrived.

        With `timeout_ms`, raise MQTTTimeout when it elapses first; the message is then
        withdrawn from retransmission and the caller keeps (and may resend) its data.
        With `expired` (QoS 1), a callable asked before every write: when it returns true
        the message is withdrawn unsent and MQTTExpired raised; the caller keeps its data.
        """
        codec.publish_head(topic, len(payload), qos, 1, False, retain)  # validate early
        deadline = None
        if timeout_ms is not None:
            deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        if qos == 0:
            await self._wait(self.up, deadline, "the connection to come up")
            try:
                await self._send(codec.publish_head(topic, len(payload), 0, 0, False, retain), payload)
            except (OSError, _ConnectionDead):
                pass  # QoS 0 is fire and forget; the supervisor notices the dead link
            return
        while len(self._inflight) >= self.config["max_inflight"]:
            self._slot_free.clear()
            await self._wait(self._slot_free, deadline, "a free in-flight slot")
        self._check_running()
        msg = _Outgoing(self._next_pid(), topic, payload, retain, expired)
        self._inflight.append(msg)
        try:
            if self.up.is_set():
                try:
                    # Only on the connection it was queued for: if that one dies before the
                    # write lock is ours, the reconnect has already resent the message.
                    await self._send_publish(msg, self._sock)
                except (OSError, _ConnectionDead):
                    pass  # still in flight: resent after the reconnect
            # else: the supervisor sends it right after the next CONNACK.
            await self._wait(msg.done, deadline, "the PUBACK")
            if msg.error:
                raise msg.error
        finally:
            self._forget(msg)

    async def run(self):
        """The supervisor: connect, keep connected, reconnect with backoff until disconnect()."""
        cfg = self.config
        self._running = True
        self._closed = False
        self._stopped.clear()
        backoff = cfg["backoff_min_ms"]
        try:
            while self._running:
                try:
                    await self._connect()
                except Exception as e:
                    self._close()
                    if not self._running:
                        break
                    # Wait between half and all of the backoff, then double it.
                    delay = backoff - _rand(backoff // 2 + 1)
                    self._emit(2, "connect to %s:%d failed (%s: %s); retry in %d ms"
                               % (cfg["host"], cfg["port"], type(e).__name__, e, delay))
                    await self._sleep_unless_stopped(delay)
                    backoff = min(backoff * 2, cfg["backoff_max_ms"])
                    continue
                backoff = cfg["backoff_min_ms"]
                await self._dead.wait()
                self._close()
                if self._running:
                    self._emit(2, "connection lost; reconnecting")
        finally:
            self._running = False
            self._close()
            self._stopped.set()

    async def disconnect(self):
        """Send DISCONNECT (the will is not published), close, and stop the supervisor."""
        was_up = self.up.is_set()
        self._running = False
        self._closed = True
        if was_up:
            try:
                await self._send(codec.DISCONNECT_PACKET)
            except Exception:
                pass
        self._close()
        err = MQTTDisconnected("client disconnected while the message was waiting for its PUBACK")
        for msg in self._inflight:
            msg.error = err
            msg.done.set()
        self._slot_free.set()
        self.up.set()  # wake QoS-0 publishers waiting for a connection; they see the stop
        self.up.clear()
        self._dead.set()

    # -----------------------------------------------------------------------------------
    # Connection

    async def _connect(self):
        cfg = self.config
        self._dead.clear()
        self._decoder.reset()
        self._ping_sent = None
        deadline = time.ticks_add(time.ticks_ms(), cfg["connect_timeout_ms"])
        # getaddrinfo blocks on every port; with a numeric host it returns at once.
        ai = socket.getaddrinfo(cfg["host"], cfg["port"], 0, socket.SOCK_STREAM)[0]
        sock = socket.socket(ai[0], socket.SOCK_STREAM)
        self._sock = sock
        try:
            sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError, TypeError):
            pass  # a port without TCP_NODELAY still works, only slower for small messages
        sock.setblocking(False)
        try:
            sock.connect(ai[-1])
        except OSError as e:
            if e.args[0] != EINPROGRESS:
                raise
        await self._until(_writable(sock), deadline, "TCP connect")
        if cfg["ssl"] is not None:
            sock = cfg["ssl"].wrap_socket(sock, server_hostname=cfg["server_hostname"] or cfg["host"],
                                          do_handshake_on_connect=False)
            sock.setblocking(False)
            self._sock = sock  # the handshake runs inside the first writes and reads
        will = cfg["will"]
        if callable(will):
            will = will()
        if will:
            wt, wp, wr, wq = will
        else:
            wt, wp, wr, wq = None, b"", False, 0
        pkt = codec.connect(cfg["client_id"], cfg["clean_session"], cfg["keepalive_s"],
                            cfg["user"], cfg["password"], wt, wp, wq, wr)
        await self._until(self._write_all(pkt), deadline, "CONNECT")
        connack = None
        while connack is None:
            n = await self._until(self._read_some(), deadline, "CONNACK")
            self._decoder.feed(memoryview(self._rxbuf)[:n])
            connack = self._decoder.next()
        if connack.kind != codec.CONNACK:
            raise codec.MQTTProtocolError("expected CONNACK, got packet type %d" % connack.kind)
        connack.check()
        self.connects += 1
        self._last_ping = time.ticks_ms()
        self._tasks = [asyncio.create_task(self._reader(sock)), asyncio.create_task(self._ticker(sock))]
        if self._subs:
            await self._resubscribe()
        await self._resend_inflight(connack.session_present)
        self.down.clear()
        self.up.set()
        self._slot_free.set()
        self._emit(1, "connected to %s:%d (session present: %s)"
                   % (cfg["host"], cfg["port"], connack.session_present))

    async def _resubscribe(self):
        # One SUBSCRIBE for everything, so a reconnect costs one round trip.
        pid = self._next_pid()
        topics = list(self._subs.items())
        ev = asyncio.Event()
        self._suback = (pid, ev, [])
        await self._send(codec.subscribe(pid, topics))
        deadline = time.ticks_add(time.ticks_ms(), self.config["ack_timeout_ms"])
        await self._until(ev.wait(), deadline, "SUBACK")
        got = self._suback[2] if self._suback else None
        self._suback = None
        if not got:
            raise _ConnectionDead("connection lost before the SUBACK")
        ack = got[0]
        for (topic, _), g in zip(topics, ack.granted):
            if g == codec.SUBACK_FAILURE:
                self._emit(3, "broker refused the subscription to %r; check the ACL" % topic)

    async def _send_subscribe_now(self, topic, qos):
        try:
            await self._send(codec.subscribe(self._next_pid(), [(topic, qos)]))
        except Exception:
            pass  # the next connect applies it anyway

    async def _resend_inflight(self, session_present):
        # The broker kept our session: these are retransmissions (DUP). With a clean
        # session it forgot them, so they go out as new messages (section 4.4).
        for msg in list(self._inflight):
            msg.dup = bool(session_present) and msg.tries > 0
            await self._send_publish(msg)

    def _close(self):
        self.up.clear()
        self.down.set()
        sock = self._sock
        self._sock = None
        self._dead.set()
        # Cancel the connection's tasks before closing: a task left waiting in the poller
        # on a closed socket would never wake up.
        cur = asyncio.current_task()
        for t in self._tasks:
            if t is not cur:
                t.cancel()
        self._tasks = []
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        for msg in self._inflight:
            msg.sent = None
            msg.probe = None
        if self._suback:
            self._suback[1].set()

    def _mark_dead(self, sock, why):
        # Only the current connection's tasks may kill it; stale tasks just exit.
        if sock is self._sock and self._sock is not None:
            self._emit(2, "connection dead: %s" % why)
            self._close()

    # -----------------------------------------------------------------------------------
    # Tasks of one connection

    async def _reader(self, sock):
        dec = self._decoder
        buf = self._rxbuf
        mv = memoryview(buf)
        try:
            # Packets that arrived together with the CONNACK.
            await self._dispatch_all(sock, dec)
            while sock is self._sock:
                await _readable(sock)
                n = sock.readinto(buf)
                if n is None:
                    continue  # TLS record not complete yet
                if n == 0:
                    raise _ConnectionDead("broker closed the connection")
                dec.feed(mv[:n])
                await self._dispatch_all(sock, dec)
        except Exception as e:
            self._mark_dead(sock, "%s: %s" % (type(e).__name__, e))

    async def _dispatch_all(self, sock, dec):
        while sock is self._sock:
            pkt = dec.next()
            if pkt is None:
                return
            self._ping_sent = None  # anything from the broker proves the link is alive
            kind = pkt.kind
            if kind == codec.PUBACK:
                for msg in self._inflight:
                    if msg.pid == pkt.pid:
                        msg.done.set()
                        break
            elif kind == codec.PUBLISH:
                if self.on_message is not None:
                    try:
                        self.on_message(pkt.topic, pkt.payload)
                    except Exception as e:
                        self._emit(3, "on_message failed for %r: %s" % (pkt.topic, e))
                if pkt.qos:
                    # Ack after the callback returned: the message is handled, not just read.
                    await self._send(codec.puback(pkt.pid))
            elif kind == codec.SUBACK:
                if self._suback and self._suback[0] == pkt.pid:
                    self._suback[2].append(pkt)
                    self._suback[1].set()
                elif pkt.failed():
                    self._emit(3, "broker refused a subscription (SUBACK %r)" % (pkt.granted,))
            elif kind == codec.PINGRESP:
                pass
            else:
                raise codec.MQTTProtocolError("unexpected packet type %d after CONNACK" % kind)

    async def _ticker(self, sock):
        cfg = self.config
        keepalive = cfg["keepalive_s"] * 1000
        ack_timeout = cfg["ack_timeout_ms"]
        try:
            while sock is self._sock:
                await asyncio.sleep_ms(_TICK_MS)
                if sock is not self._sock:
                    return
                now = time.ticks_ms()
                if self._ping_sent is not None and time.ticks_diff(now, self._ping_sent) > ack_timeout:
                    raise _ConnectionDead("no PINGRESP within %d ms" % ack_timeout)
                # Ping at half the keepalive so the broker never sees 1.5x keepalive of silence.
                if keepalive and time.ticks_diff(now, self._last_ping) >= keepalive // 2:
                    self._last_ping = now
                    if self._ping_sent is None:
                        self._ping_sent = now
                    await self._send(codec.PINGREQ_PACKET)
                for msg in list(self._inflight):
                    if msg.sent is None and self.up.is_set():
                        # Queued while the supervisor was resending after a reconnect.
                        await self._send_publish(msg, sock)
                    elif msg.sent is not None and not msg.done.is_set() \
                            and time.ticks_diff(time.ticks_ms(), msg.sent) > ack_timeout:
                        if msg.probe is None:
                            # Is anybody there? The PINGRESP deadline above answers that.
                            msg.probe = time.ticks_ms()
                            if self._ping_sent is None:
                                self._ping_sent = msg.probe
                                self._emit(2, "no PUBACK for packet %d within %d ms; probing the link"
                                           % (msg.pid, ack_timeout))
                                await self._send(codec.PINGREQ_PACKET)
                        elif self._ping_sent is None:
                            # The broker answered since: it is alive and lost this message.
                            msg.probe = None
                            msg.dup = True
                            self.retransmits += 1
                            self._emit(2, "no PUBACK for packet %d; link alive; resending" % msg.pid)
                            await self._send_publish(msg, sock)
        except Exception as e:
            self._mark_dead(sock, "%s: %s" % (type(e).__name__, e))

    # -----------------------------------------------------------------------------------
    # Writing

    async def _send_publish(self, msg, only_on=None):
        if msg.done.is_set():
            return
        if msg.expired is not None and msg.expired():
            # Too old to go out as it is: hand it back to the caller, which re-seals it.
            self._emit(2, "packet %d expired before it could be (re)sent; withdrawn" % msg.pid)
            msg.error = MQTTExpired("the message expired before it could be sent; withdrawn")
            msg.done.set()
            return
        head = codec.publish_head(msg.topic, len(msg.payload), 1, msg.pid, msg.dup, msg.retain)
        msg.sent = time.ticks_ms()  # keeps the ticker from retransmitting while we wait
        if await self._send(head, msg.payload, only_on):
            msg.tries += 1
            msg.sent = time.ticks_ms()  # the ack clock starts when the last byte left

    async def _send(self, head, payload=None, only_on=None):
        """Write one whole packet under the write lock, within ack_timeout_ms.

        With `only_on`, write only if that socket is still the live one; returns whether
        the packet was written.
        """
        async with self._wlock:
            sock = self._sock
            if sock is None:
                raise _ConnectionDead("not connected")
            if only_on is not None and sock is not only_on:
                return False
            deadline = time.ticks_add(time.ticks_ms(), self.config["ack_timeout_ms"])
            try:
                await self._until(self._write_all(head, sock), deadline, "a write")
                if payload:
                    await self._until(self._write_all(payload, sock), deadline, "a write")
            except Exception as e:
                # Part of a packet may be on the wire: the stream is unusable now.
                self._mark_dead(sock, "write failed: %s: %s" % (type(e).__name__, e))
                raise _ConnectionDead("write failed")
        return True

    async def _write_all(self, data, sock=None):
        sock = sock or self._sock
        mv = memoryview(data)
        off = 0
        end = len(mv)
        while off < end:
            try:
                n = sock.write(mv[off:])
            except OSError as e:
                if e.args[0] != EAGAIN:
                    raise
                n = None
            if n:
                off += n
            else:
                await _writable(sock)

    async def _read_some(self):
        sock = self._sock
        while True:
            await _readable(sock)
            n = sock.readinto(self._rxbuf)
            if n is None:
                continue
            if n == 0:
                raise _ConnectionDead("broker closed the connection")
            return n

    # -----------------------------------------------------------------------------------
    # Helpers

    async def _until(self, aw, deadline, what):
        ms = time.ticks_diff(deadline, time.ticks_ms())
        if ms <= 0:
            raise MQTTTimeout("timed out waiting for %s" % what)
        try:
            return await asyncio.wait_for_ms(aw, ms)
        except asyncio.TimeoutError:
            raise MQTTTimeout("timed out waiting for %s" % what)

    async def _wait(self, event, deadline, what):
        """Wait for an event, forever if deadline is None, else raise MQTTTimeout."""
        while not event.is_set():
            self._check_running()
            if deadline is None:
                await event.wait()
            else:
                await self._until(event.wait(), deadline, what)

    def _check_running(self):
        if self._closed:
            raise MQTTDisconnected("the client was disconnected; create a new one or call run() again")

    def _forget(self, msg):
        try:
            self._inflight.remove(msg)
        except ValueError:
            pass
        self._slot_free.set()

    def _next_pid(self):
        busy = [m.pid for m in self._inflight]
        while True:
            self._pid = self._pid % 0xFFFF + 1
            if self._pid not in busy:
                return self._pid

    async def _sleep_unless_stopped(self, ms):
        end = time.ticks_add(time.ticks_ms(), ms)
        while self._running:
            left = time.ticks_diff(end, time.ticks_ms())
            if left <= 0:
                return
            await asyncio.sleep_ms(min(left, 100))

    def _emit(self, level, msg):
        # Levels: 0 debug, 1 info, 2 warning, 3 error.
        if self._log is not None:
            self._log(level, msg)
