"""The simulator's network: a loopback proxy that delays, throttles, stalls and cuts a TCP link.

An echo server stands in for the broker. Timing checks use generous bounds that hold on a
loaded machine: they tell a shaped link from an unshaped one, not 10 % from 20 %.
"""

import os
import socket
import threading
import time

import pytest

from simulator.netproxy import NetProxy


class EchoServer:
    """Echoes every byte back; counts the connections it saw."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.received = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)
                try:
                    c.sendall(data)
                except OSError:
                    return

    def close(self):
        self._stop = True
        self.sock.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def roundtrip(sock, payload, timeout=30.0):
    """Send payload and read the same number of bytes back."""
    sock.settimeout(timeout)
    got = bytearray()
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    sender.start()
    while len(got) < len(payload):
        data = sock.recv(65536)
        if not data:
            break
        got += data
    sender.join()
    return bytes(got)


def test_bytes_pass_through_intact_both_ways(echo):
    payload = os.urandom(300_000)
    with NetProxy("127.0.0.1", echo.port) as proxy:
        with socket.create_connection((proxy.host, proxy.port)) as s:
            assert roundtrip(s, payload) == payload
        assert proxy.wait_idle(), "the connection did not wind down after the client closed"
        assert proxy.stats["bytes_up"] == len(payload)
        assert proxy.stats["bytes_down"] == len(payload)


def test_loss_delays_bytes_but_never_corrupts_or_reorders_them(echo):
    payload = os.urandom(100_000)
    with NetProxy("127.0.0.1", echo.port, loss=0.2, rto_ms=5, seed=7) as proxy:
        with socket.create_connection((proxy.host, proxy.port)) as s:
            assert roundtrip(s, payload) == payload
        assert proxy.stats["segments_lost"] > 0


def test_latency_delays_the_round_trip(echo):
    with NetProxy("127.0.0.1", echo.port) as proxy:
        with socket.create_connection((proxy.host, proxy.port)) as s:
            roundtrip(s, b"warm")
            t0 = time.monotonic()
            roundtrip(s, b"ping")
            fast = time.monotonic() - t0
            proxy.shape(latency_ms=150)          # one way, each direction: 300 ms round trip
            t0 = time.monotonic()
            assert roundtrip(s, b"ping") == b"ping"
            slow = time.monotonic() - t0
    assert slow >= 0.29, "a 300 ms round trip cannot come back sooner"
    assert slow > fast


def test_bandwidth_limit_slows_a_bulk_transfer(echo):
    payload = os.urandom(64 * 1024)  # 512 kbit each way
    with NetProxy("127.0.0.1", echo.port, bandwidth_bps=1_000_000) as proxy:
        with socket.create_connection((proxy.host, proxy.port)) as s:
            t0 = time.monotonic()
            assert roundtrip(s, payload) == payload
            elapsed = time.monotonic() - t0
    # 524 288 bits at 1 Mbit/s take 0.52 s on the way in; the echo overlaps the way out.
    # A lower bound only: the link can never be faster than its bandwidth.
    assert elapsed >= 0.45, f"64 KiB over 1 Mbit/s arrived in {elapsed:.3f} s"


def test_blackhole_cut_stops_traffic_and_restore_delivers_what_waited(echo):
    with NetProxy("127.0.0.1", echo.port) as proxy:
        with socket.create_connection((proxy.host, proxy.port)) as s:
            assert roundtrip(s, b"before") == b"before"
            received = echo.received
            proxy.cut()
            s.sendall(b"during the cut")
            s.settimeout(0.8)
            with pytest.raises(socket.timeout):
                s.recv(100)
            assert echo.received == received, "bytes crossed a cut link"
            proxy.restore()
            s.settimeout(10)
            got = b""
            while len(got) < len(b"during the cut"):
                got += s.recv(100)
            assert got == b"during the cut"


def test_connection_opened_during_a_blackhole_never_reaches_the_far_end_if_abandoned(echo):
    with NetProxy("127.0.0.1", echo.port) as proxy:
        proxy.cut()
        with socket.create_connection((proxy.host, proxy.port)) as s:
            s.sendall(b"CONNECT")
            time.sleep(0.3)
        time.sleep(0.3)
        proxy.restore()
        time.sleep(0.5)
        assert echo.accepted == 0, "an abandoned connection was carried to the broker after the cut"


def test_reset_cut_kills_connections_and_refuses_new_ones_until_restore(echo):
    with NetProxy("127.0.0.1", echo.port) as proxy:
        s = socket.create_connection((proxy.host, proxy.port))
        assert roundtrip(s, b"hello") == b"hello"
        proxy.cut(mode="reset")
        s.settimeout(5)
        with pytest.raises((ConnectionResetError, BrokenPipeError, OSError)):
            data = s.recv(100)
            if not data:
                raise ConnectionResetError("closed")
        s.close()
        s2 = socket.create_connection((proxy.host, proxy.port))
        s2.settimeout(5)
        with pytest.raises((ConnectionResetError, OSError)):
            s2.sendall(b"x")
            data = s2.recv(100)
            if not data:
                raise ConnectionResetError("closed")
        s2.close()
        assert proxy.stats["refused"] >= 1
        proxy.restore()
        with socket.create_connection((proxy.host, proxy.port)) as s3:
            assert roundtrip(s3, b"again") == b"again"


def test_close_ends_every_proxy_thread(echo):
    before = {t.name for t in threading.enumerate()}
    proxy = NetProxy("127.0.0.1", echo.port, latency_ms=5)
    conns = [socket.create_connection((proxy.host, proxy.port)) for _ in range(3)]
    for c in conns:
        assert roundtrip(c, b"x") == b"x"
    proxy.close()
    for c in conns:
        c.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate() if t.name.startswith("netproxy-") and t.name not in before]
        if not left:
            break
        time.sleep(0.05)
    assert not left, f"threads still running after close(): {[t.name for t in left]}"


def test_proxy_refuses_a_target_off_loopback():
    with pytest.raises(ValueError):
        NetProxy("192.0.2.1", 1883)


def test_no_alarm_beats_the_physics_of_its_link():
    """`vericam bench uplink` end to end, one alarm per link: delivery can never be faster
    than the JPEG bytes at the link's bandwidth plus one round trip. A ratio below 1 would
    mean the proxy is not shaping what it claims; the figures must also be complete."""
    from simulator.bench.uplink import run_uplink

    result = run_uplink(1)
    assert [link["link"] for link in result["links"]] == ["1mbit-100ms", "256kbit-300ms"]
    for link in result["links"]:
        assert link["ratio_p50"] >= 1.0, link
        assert link["bytes_up_p50"] > link["jpeg_bytes_p50"]  # sealing and envelopes cost bytes
        assert link["overhead_bytes_per_photo_p50"] > 0
        assert link["delivery_ms"]["p50"] >= link["minimum_ms_p50"]
