"""The network between a device and its broker: a loopback TCP proxy that shapes and cuts the link.

Theory of operation
-------------------
`NetProxy` listens on 127.0.0.1 (a free port) and forwards every accepted connection to
the target (the broker). Each direction of each connection is a `_Pipe`: a reader thread
takes bytes from one socket, cuts them into segments of at most `SEGMENT` bytes and stamps
each with the time it is due at the far end; a writer thread sends each segment when it is
due. The stamp is the model of the link, one bottleneck in each direction:

    leaves the bottleneck  tx = max(arrival, tx of the previous segment) + 8 * len / bandwidth
    due at the far end     due = tx + latency (one way) [+ a retransmission delay, see loss]

so a bulk transfer runs at `bandwidth_bps` and every byte is `latency_ms` late; the stamps
never decrease, so the byte stream stays in order. What waits in a pipe is bounded
(`buffer_bytes`, the bottleneck's queue): a full pipe stops reading, and TCP's own flow
control pushes back on the sender, as a real slow link does.

Loss. TCP cannot lose bytes: a segment lost on the wire is sent again by the sender's
kernel one retransmission timeout later, and everything behind it waits (head-of-line
blocking). So `loss` (0..1) is modelled as that: a lost segment, and therefore the
stream behind it, arrives `rto_ms` (default 200 ms, Linux's minimum RTO) later. The bytes
arrive intact; only their timing shows the loss. Losing a connection altogether is
`cut(mode="reset")`.

Cuts. `cut()` takes the link down until `restore()`:
- mode "blackhole" (default, a pulled cable upstream): nothing is forwarded either way.
  Bytes already in a pipe wait there (TCP would keep retransmitting them) and are delivered
  after `restore()`. A connection opened during the cut is accepted locally (the proxy is on
  loopback, the handshake cannot be hidden) but never reaches the broker: it gets no answer
  at all, so only the device's own deadlines get it out. If the device is still waiting at
  `restore()` its connection is carried through, as a retransmitted SYN would be.
- mode "reset" (a router that reboots): every connection is reset (RST) at once, and new
  connections are reset as soon as they are accepted until `restore()`.

Everything is on loopback and every thread ends when `close()` is called.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import deque

SEGMENT = 1460            # bytes per stamped segment: one Ethernet MSS
DEFAULT_BUFFER = 256 * 1024
_POLL = 0.05              # how often blocked threads look at the link and at close()


class Shaping:
    """The link's figures; `NetProxy.shape()` changes them while connections run."""

    def __init__(self, latency_ms: float = 0.0, bandwidth_bps: float | None = None,
                 loss: float = 0.0, rto_ms: float = 200.0):
        if latency_ms < 0 or (bandwidth_bps is not None and bandwidth_bps <= 0) or not 0 <= loss < 1:
            raise ValueError("shaping needs latency_ms >= 0, bandwidth_bps > 0 (or None) and 0 <= loss < 1")
        self.latency_ms = float(latency_ms)
        self.bandwidth_bps = None if bandwidth_bps is None else float(bandwidth_bps)
        self.loss = float(loss)
        self.rto_ms = float(rto_ms)

    def as_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "bandwidth_bps": self.bandwidth_bps,
                "loss": self.loss, "rto_ms": self.rto_ms}


def _reset(sock: socket.socket | None) -> None:
    """Close with RST, not FIN: the peer sees ECONNRESET."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Pipe:
    """One direction of one connection: reader stamps segments, writer sends them when due."""

    def __init__(self, proxy: "NetProxy", conn: "_Connection", name: str):
        self.proxy = proxy
        self.conn = conn
        self.name = name  # "up" (device -> broker) or "down"
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.tx_free = 0.0  # when the bottleneck is free for the next segment
        self.last_due = 0.0
        self.eof = False
        self.cv = threading.Condition()

    def shaping(self) -> Shaping:
        return self.proxy.shaping_up if self.name == "up" else self.proxy.shaping_down

    def read_from(self, src: socket.socket) -> None:
        try:
            while not self.conn.closed:
                with self.cv:
                    while self.queued >= self.proxy.buffer_bytes and not self.conn.closed:
                        self.cv.wait(_POLL)
                if self.conn.closed:
                    return
                try:
                    data = src.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                if not data:
                    break
                self._stamp(data)
        finally:
            with self.cv:
                self.eof = True
                self.cv.notify_all()

    def _stamp(self, data: bytes) -> None:
        now = time.monotonic()
        sh = self.shaping()
        with self.cv:
            for off in range(0, len(data), SEGMENT):
                seg = data[off:off + SEGMENT]
                tx = max(now, self.tx_free)
                if sh.bandwidth_bps:
                    tx += len(seg) * 8 / sh.bandwidth_bps
                self.tx_free = tx
                due = tx + sh.latency_ms / 1000
                if sh.loss and self.proxy.rng.random() < sh.loss:
                    due += sh.rto_ms / 1000
                    self.proxy.count("segments_lost")
                due = max(due, self.last_due)  # in order, whatever the shaping did meanwhile
                self.last_due = due
                self.queue.append((due, seg))
                self.queued += len(seg)
            self.cv.notify_all()

    def write_to(self, dst_getter) -> None:
        """Send segments when due and the link is up; dst_getter() gives the socket (may block)."""
        dst = None
        try:
            while not self.conn.closed:
                with self.cv:
                    if not self.queue:
                        if self.eof:
                            break
                        self.cv.wait(_POLL)
                        continue
                    due, seg = self.queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(min(wait, _POLL))
                    continue
                if not self.proxy.link_up.is_set():
                    self.proxy.link_up.wait(_POLL)
                    continue
                if dst is None:
                    if self.name == "up" and self.eof and self.conn.upstream is None:
                        # The device gave up before the link let its SYN through: that
                        # connection never reached the broker, and its bytes never will.
                        self.conn.close()
                        return
                    dst = dst_getter()
                    if dst is None:
                        return
                try:
                    dst.sendall(seg)
                except OSError:
                    break
                with self.cv:
                    self.queue.popleft()
                    self.queued -= len(seg)
                    self.cv.notify_all()
                self.proxy.count("bytes_" + self.name, len(seg))
            else:
                return
            # The source closed (or the far end failed): pass the close on.
            if dst is not None and not self.conn.closed:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        finally:
            self.conn.pipe_done()


class _Connection:
    """One device connection through the proxy: the client socket, the upstream socket, two pipes."""

    def __init__(self, proxy: "NetProxy", client: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = False
        self._done = 0
        self._lock = threading.Lock()
        self._upstream_ready = threading.Event()
        self.up = _Pipe(proxy, self, "up")
        self.down = _Pipe(proxy, self, "down")
        client.settimeout(_POLL)

    def start(self) -> None:
        t = [threading.Thread(target=self.up.read_from, args=(self.client,), daemon=True),
             threading.Thread(target=self.up.write_to, args=(self._connect_upstream,), daemon=True),
             threading.Thread(target=self.down.write_to, args=(self._wait_upstream_client,), daemon=True)]
        for th in t:
            th.name = f"netproxy-{self.proxy.port}-{th.name}"
            th.start()

    def _connect_upstream(self) -> socket.socket | None:
        # Called by the up writer once there is a byte to send and the link is up: that is
        # when the SYN of a real connection would get through.
        try:
            s = socket.create_connection((self.proxy.target_host, self.proxy.target_port), timeout=5)
        except OSError:
            self.close(reset=True)
            return None
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(_POLL)
        with self._lock:
            if self.closed:
                _reset(s)
                return None
            self.upstream = s
        self._upstream_ready.set()
        threading.Thread(target=self.down.read_from, args=(s,), daemon=True,
                         name=f"netproxy-{self.proxy.port}-down-reader").start()
        return s

    def _wait_upstream_client(self) -> socket.socket | None:
        while not self.closed:
            if self._upstream_ready.wait(_POLL):
                return self.client
        return None

    def pipe_done(self) -> None:
        with self._lock:
            self._done += 1
            both = self._done >= 2
        if both:
            self.close()

    def close(self, reset: bool = False) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            socks = [self.client, self.upstream]
        for s in socks:
            if s is None:
                continue
            if reset:
                _reset(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass
        for p in (self.up, self.down):
            with p.cv:
                p.cv.notify_all()
        self.proxy._forget(self)


class NetProxy:
    """A shaped, cuttable TCP link from 127.0.0.1:<port> to (target_host, target_port)."""

    def __init__(self, target_host: str, target_port: int, latency_ms: float = 0.0,
                 bandwidth_bps: float | None = None, loss: float = 0.0, rto_ms: float = 200.0,
                 buffer_bytes: int = DEFAULT_BUFFER, seed: int | None = None, name: str = "link"):
        if target_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the proxy forwards to loopback only; fault traffic stays on this machine")
        self.target_host = target_host
        self.target_port = int(target_port)
        self.name = name
        self.buffer_bytes = int(buffer_bytes)
        self.shaping_up = Shaping(latency_ms, bandwidth_bps, loss, rto_ms)
        self.shaping_down = Shaping(latency_ms, bandwidth_bps, loss, rto_ms)
        self.rng = random.Random(seed)
        self.link_up = threading.Event()
        self.link_up.set()
        self.cut_mode: str | None = None
        self.stats = {"connections": 0, "refused": 0, "resets": 0, "bytes_up": 0, "bytes_down": 0,
                      "segments_lost": 0}
        self._conns: set[_Connection] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(_POLL)
        self.host = "127.0.0.1"
        self.port = self._server.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True, name=f"netproxy-{self.port}")
        self._acceptor.start()

    # -- control ------------------------------------------------------------------------------

    def shape(self, latency_ms: float | None = None, bandwidth_bps: float | None = None,
              loss: float | None = None, rto_ms: float | None = None, unlimited: bool = False) -> None:
        """Change the link's figures, both directions, for bytes that arrive from now on.

        `latency_ms` is one way (the round trip adds two); `unlimited=True` lifts the bandwidth cap.
        """
        for sh in (self.shaping_up, self.shaping_down):
            new = Shaping(sh.latency_ms if latency_ms is None else latency_ms,
                          None if unlimited else (sh.bandwidth_bps if bandwidth_bps is None else bandwidth_bps),
                          sh.loss if loss is None else loss,
                          sh.rto_ms if rto_ms is None else rto_ms)
            sh.__dict__.update(new.__dict__)

    def cut(self, mode: str = "blackhole") -> None:
        """Take the link down until restore(); see the module docstring for the two modes."""
        if mode not in ("blackhole", "reset"):
            raise ValueError("cut mode is 'blackhole' or 'reset'")
        self.cut_mode = mode
        self.link_up.clear()
        if mode == "reset":
            for conn in self.connections():
                self.count("resets")
                conn.close(reset=True)

    def restore(self) -> None:
        self.cut_mode = None
        self.link_up.set()

    @property
    def is_up(self) -> bool:
        return self.link_up.is_set()

    def connections(self) -> list[_Connection]:
        with self._lock:
            return list(self._conns)

    def count(self, key: str, n: int = 1) -> None:
        """Add to one of `stats`; pipes of several connections count at once."""
        with self._lock:
            self.stats[key] += n

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every connection has finished both ways, so `stats` holds all it will.

        A peer can see its last byte before the writer that sent it has counted it; read byte
        counts after this returns True.
        """
        deadline = time.monotonic() + timeout
        while self.connections():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Stop accepting, close every connection and join the acceptor."""
        self._closing = True
        self.link_up.set()
        for conn in self.connections():
            conn.close()
        self._acceptor.join(2)
        try:
            self._server.close()
        except OSError:
            pass

    def __enter__(self) -> "NetProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self._closing or self.cut_mode == "reset":
                self.count("refused")
                _reset(client)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client)
            with self._lock:
                self._conns.add(conn)
            self.count("connections")
            conn.start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)
