"""The firmware's own MQTT client, run on real MicroPython against a real Mosquitto.

The CPython side never imports firmware code: codec bytes are rebuilt here by hand from
the MQTT 3.1.1 spec, and the ARC end of each scenario is a paho-mqtt subscriber.
"""

import json
import os
import signal
import socket
import struct
import threading
import time

import paho.mqtt.client as paho
import pytest

from simulator.broker import DEFAULT_CONFIG, Broker
from simulator.mpy import run_micropython

from support.micropython import SCRIPTS, MicroPythonScript


# ---------------------------------------------------------------------------------------
# Helpers


class ArcSubscriber:
    """A paho-mqtt subscriber standing in for the ARC: persistent session, QoS 1, auto-reconnect."""

    def __init__(self, broker, topic, client_id="arc-test"):
        self.messages = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, protocol=paho.MQTTv311)
        self.client.reconnect_delay_set(1, 2)
        self.topic = topic

        def on_connect(client, userdata, flags, reason_code, properties):
            client.subscribe(topic, qos=1)

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            self.subscribed.set()

        def on_message(client, userdata, msg):
            with self.cond:
                self.messages.append((msg.topic, bytes(msg.payload), msg.retain))
                self.cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self.subscribed.wait(5), "paho subscriber could not subscribe"

    def wait_for(self, predicate, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.messages), timeout)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def device_config(broker, **over):
    cfg = {"host": broker.host, "port": broker.port, "client_id": "cam-1",
           "ack_timeout_ms": 1000, "connect_timeout_ms": 1000,
           "backoff_min_ms": 100, "backoff_max_ms": 1000}
    cfg.update(over)
    return json.dumps(cfg)


def numbered_payload(n, size):
    """What mqtt_pub.py sends as message n: its number, then a fixed pattern."""
    return b"%08d" % n + bytes((i * 7) & 0xFF for i in range(8, size))


# ---------------------------------------------------------------------------------------
# Codec: MicroPython's bytes against bytes built here from the spec


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def varint(n):
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def run_codec(request):
    r = run_micropython(SCRIPTS / "mqtt_codec.py", input=json.dumps(request).encode(), timeout=20)
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    return json.loads(r.stdout)


def test_codec_encodes_packets_byte_for_byte_as_the_spec_says():
    big_topic = "vc/v1/cam-1/up/capture"
    encode = [
        ["connect", {"client_id": "cam-1", "clean_session": True, "keepalive_s": 60}],
        ["connect", {"client_id": "cam-1", "clean_session": False, "keepalive_s": 30, "user": "cam-1",
                     "password": "s3cret", "will_topic": "vc/v1/cam-1/up/status",
                     "will_payload": "0ff11e", "will_qos": 1, "will_retain": True}],
        ["publish_head", {"topic": "a/b", "payload_len": 5, "qos": 0}],
        ["publish_head", {"topic": big_topic, "payload_len": 8192, "qos": 1, "pid": 513,
                          "dup": True, "retain": True}],
        ["puback", {"pid": 0xBEEF}],
        ["subscribe", {"pid": 7, "topics": [["vc/v1/cam-1/down/#", 1], ["x", 0]]}],
        ["pingreq", {}],
        ["disconnect", {}],
        # Refused by the encoder, not sent as garbage:
        ["publish_head", {"topic": "a/+", "payload_len": 1, "qos": 0}],
        ["publish_head", {"topic": "a", "payload_len": 1, "qos": 2, "pid": 1}],
        ["publish_head", {"topic": "a", "payload_len": 1, "qos": 1, "pid": 0}],
        ["connect", {"client_id": "c", "password": "p"}],
    ]
    out = run_codec({"encode": encode, "varint": [], "decode": []})["encode"]
    expected = [
        packet(0x10, mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + mqtt_str("cam-1")),
        packet(0x10, mqtt_str("MQTT") + bytes([4, 0x80 | 0x40 | 0x20 | 0x08 | 0x04]) + struct.pack("!H", 30)
               + mqtt_str("cam-1") + mqtt_str("vc/v1/cam-1/up/status") + mqtt_str(b"\x0f\xf1\x1e")
               + mqtt_str("cam-1") + mqtt_str("s3cret")),
        # PUBLISH heads: the remaining length counts the payload that is written separately.
        bytes([0x30]) + varint(2 + 3 + 5) + mqtt_str("a/b"),
        bytes([0x3B]) + varint(2 + len(big_topic) + 2 + 8192) + mqtt_str(big_topic) + struct.pack("!H", 513),
        bytes([0x40, 2, 0xBE, 0xEF]),
        packet(0x82, struct.pack("!H", 7) + mqtt_str("vc/v1/cam-1/down/#") + b"\x01" + mqtt_str("x") + b"\x00"),
        bytes([0xC0, 0]),
        bytes([0xE0, 0]),
    ]
    assert out[:8] == [e.hex() for e in expected]
    assert out[8:] == ["ValueError"] * 4


def test_codec_remaining_length_varint_round_trips_at_every_boundary():
    values = [0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455]
    out = run_codec({"encode": [], "varint": values + [268435456, -1], "decode": []})["varint"]
    assert out[:-2] == [[varint(v).hex(), v, len(varint(v))] for v in values]
    assert out[-2:] == ["ValueError", "ValueError"]


def test_codec_decoder_reassembles_packets_fed_one_byte_at_a_time():
    payload = bytes(range(256)) * 4
    stream = (bytes([0x20, 2, 1, 0])  # CONNACK, session present
              + packet(0x32, mqtt_str("vc/v1/cam-1/down/receipt") + struct.pack("!H", 99) + payload)
              + packet(0x3B, mqtt_str("t") + struct.pack("!H", 1) + b"r")  # dup, retain
              + packet(0x30, mqtt_str("q0") + b"")  # QoS 0, empty payload
              + bytes([0x40, 2, 0x12, 0x34])
              + bytes([0x90, 4, 0, 7, 1, 0x80])
              + bytes([0xD0, 0])
              + bytes([0x20, 2, 0, 5]))  # CONNACK refused: not authorized
    cases = [[stream.hex(), 1, 4096], [stream.hex(), 1000, 4096]]
    for got in run_codec({"encode": [], "varint": [], "decode": cases})["decode"]:
        assert got == [
            {"type": "connack", "session_present": True, "code": 0},
            {"type": "publish", "topic": "vc/v1/cam-1/down/receipt", "payload": payload.hex(), "qos": 1,
             "pid": 99, "dup": False, "retain": False},
            {"type": "publish", "topic": "t", "payload": b"r".hex(), "qos": 1, "pid": 1, "dup": True, "retain": True},
            {"type": "publish", "topic": "q0", "payload": "", "qos": 0, "pid": 0, "dup": False, "retain": False},
            {"type": "puback", "pid": 0x1234},
            {"type": "suback", "pid": 7, "granted": [1, 0x80], "failed": True},
            {"type": "pingresp"},
            {"type": "connack", "session_present": False, "code": 5, "refused": 5},
            {"left": 0},
        ]


def test_codec_decoder_rejects_malformed_and_oversized_packets():
    bad = {
        "varint of 5 bytes": bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        "over the cap": packet(0x30, mqtt_str("t") + bytes(200)),
        "CONNACK of 3 bytes": bytes([0x20, 3, 0, 0, 0]),
        "CONNECT from the broker": packet(0x10, bytes(10)),
        "QoS 2 PUBLISH": packet(0x34, mqtt_str("t") + b"\x00\x01"),
        "topic past the end": packet(0x30, b"\x00\x09ab"),
        "QoS 1 with packet id 0": packet(0x32, mqtt_str("t") + b"\x00\x00"),
        "SUBACK with code 3": bytes([0x90, 3, 0, 1, 3]),
    }
    cases = [[b.hex(), 1, 128] for b in bad.values()]
    out = run_codec({"encode": [], "varint": [], "decode": cases})["decode"]
    for name, got in zip(bad, out):
        assert got[-1].get("error") == "MQTTProtocolError", name
    # The cap is checked from the header alone, before the body is buffered.
    assert "exceeds the 128-byte cap" in out[1][-1]["msg"]


# ---------------------------------------------------------------------------------------
# Client against Mosquitto


def test_200_chunks_of_8k_all_reach_the_arc_exactly_once(broker):
    topic = "vc/v1/cam-1/up/capture"
    count, size = 200, 8192
    arc = ArcSubscriber(broker, topic)
    try:
        results = {}
        for label, inflight in (("1 in flight", 1), ("8 in flight", 8)):
            dev = MicroPythonScript("mqtt_pub.py", device_config(broker, max_inflight=inflight, client_id="cam-%d" % inflight),
                         json.dumps({"topic": topic, "count": count, "size": size, "workers": inflight}),
                         heapsize="256k")
            done = dev.expect("DONE", timeout=30)
            assert dev.wait(10) == 0
            results[label] = int(done.split()[1])
        assert arc.wait_for(lambda m: len(m) >= 2 * count, 20), f"ARC got {len(arc.messages)} of {2 * count}"
        time.sleep(0.3)  # anything extra (a duplicate) would arrive now
        payloads = [p for _, p, _ in arc.messages]
        assert len(payloads) == 2 * count
        expected = {numbered_payload(n, size) for n in range(count)}
        assert set(payloads) == expected
        assert sorted(payloads) == sorted(list(expected) * 2)  # each run delivered each once
        for label, ms in results.items():
            secs = max(ms, 1) / 1000
            print(f"\n{label}: {count} x {size} B QoS 1 in {ms} ms: {count / secs:.0f} msgs/s, "
                  f"{count * size / secs / 1e6:.2f} MB/s", end="")
        print(f"\npipelining speed-up (8 vs 1 in flight): "
              f"{max(results['1 in flight'], 1) / max(results['8 in flight'], 1):.1f}x")
    finally:
        arc.close()


def test_device_receives_what_it_subscribed_to_also_after_broker_restart(broker):
    topic = "vc/v1/cam-1/down/receipt"
    dev = MicroPythonScript("mqtt_sub.py", device_config(broker, keepalive_s=5), "vc/v1/cam-1/down/#", "2")
    try:
        dev.expect("UP 1")
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        pub.publish(topic, b"receipt 1", qos=1).wait_for_publish(5)
        assert dev.expect("MSG") == f"MSG {topic} {b'receipt 1'.hex()}"
        pub.disconnect()
        pub.loop_stop()
        # A clean-session broker forgets our subscription on restart: the client must renew it.
        broker.stop()
        broker.start()
        dev.expect("UP 2")
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        pub.publish(topic, b"receipt 2", qos=1).wait_for_publish(5)
        assert dev.expect("MSG") == f"MSG {topic} {b'receipt 2'.hex()}"
        pub.disconnect()
        pub.loop_stop()
        dev.expect("DONE")
        assert dev.wait(5) == 0
    finally:
        dev.stop()


def test_broker_restart_mid_stream_loses_no_chunk(broker):
    topic = "vc/v1/cam-1/up/capture"
    count, size = 120, 2048
    arc = ArcSubscriber(broker, topic)
    dev = MicroPythonScript("mqtt_pub.py", device_config(broker, max_inflight=4),
                 json.dumps({"topic": topic, "count": count, "size": size, "workers": 4, "pace_ms": 20}))
    try:
        dev.expect("ACK 30")
        broker.stop()
        time.sleep(1.0)
        broker.start()
        done = dev.expect("DONE", timeout=30)
        connects = int(done.split()[3])
        assert connects >= 2, "the client never reconnected"
        assert dev.wait(10) == 0
        expected = {numbered_payload(n, size) for n in range(count)}
        assert arc.wait_for(lambda m: expected <= {p for _, p, _ in m}, 20), \
            f"ARC is missing {len(expected - {p for _, p, _ in arc.messages})} chunks"
        print(f"\nbroker restart: {len(arc.messages)} deliveries for {count} chunks "
              f"({len(arc.messages) - count} duplicates), {connects} connects")
    finally:
        dev.stop()
        arc.close()


def test_last_will_reports_the_device_offline_when_it_dies(broker):
    status = "vc/v1/cam-1/up/status"
    arc = ArcSubscriber(broker, status)
    cfg = json.loads(device_config(broker))
    cfg["will"] = [status, "offline", True, 1]
    dev = MicroPythonScript("mqtt_will.py", json.dumps(cfg))
    try:
        dev.expect("UP")
        assert arc.messages == []
        dev.proc.send_signal(signal.SIGKILL)
        dev.proc.wait(5)
        assert arc.wait_for(lambda m: len(m) >= 1, 10), "no last will at the ARC"
        assert arc.messages[0][:2] == (status, b"offline")
    finally:
        dev.stop()
        arc.close()


def test_publish_with_timeout_gives_up_while_the_broker_is_down(broker):
    dev = MicroPythonScript("mqtt_timeout.py", device_config(broker), "vc/v1/cam-1/up/event", "800")
    try:
        dev.expect("UP")
        broker.stop()
        dev.expect("DOWN")
        line = dev.expect("TIMEOUT", timeout=15)
        _, elapsed, inflight, kept = line.split(" ", 3)
        # Not before its 800 ms; the upper bound only says "it gave up", with room for a
        # machine running three test workers on two cores.
        assert 700 <= int(elapsed) <= 10_000
        assert inflight == "0"  # withdrawn from retransmission
        assert kept == "kept by the caller"
        assert dev.wait(5) == 0
    finally:
        dev.stop()


# ---------------------------------------------------------------------------------------
# Retransmit, against a tiny fake broker that misbehaves on purpose


class FakeBroker:
    """Accepts MQTT clients and answers CONNECT; `first_publish` says what to do with the first PUBLISH:
    "swallow" (no PUBACK) or "drop" (close the connection). Later PUBLISHes get their PUBACK."""

    def __init__(self, first_publish):
        self.first_publish = first_publish
        self.publishes = []  # (connection number, first byte, packet id, payload)
        self.connects = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connects += 1
            threading.Thread(target=self._client, args=(conn, self.connects), daemon=True).start()

    @staticmethod
    def _read_packet(f):
        first = f.read(1)
        if not first:
            return None, None
        n, shift = 0, 0
        while True:
            b = f.read(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return first[0], f.read(n)

    def _client(self, conn, number):
        f = conn.makefile("rb")
        with conn:
            while True:
                first, body = self._read_packet(f)
                if first is None:
                    return
                kind = first >> 4
                if kind == 1:
                    conn.sendall(bytes([0x20, 2, 0, 0]))
                elif kind == 12:
                    conn.sendall(bytes([0xD0, 0]))
                elif kind == 3:
                    tlen = struct.unpack_from("!H", body)[0]
                    pid = struct.unpack_from("!H", body, 2 + tlen)[0]
                    self.publishes.append((number, first, pid, body[4 + tlen:]))
                    if len(self.publishes) == 1:
                        if self.first_publish == "drop":
                            return
                        continue  # swallowed: no PUBACK
                    conn.sendall(bytes([0x40, 2]) + struct.pack("!H", pid))

    def client_config(self):
        """The device's client config for this broker: short ack timeout and backoff, as JSON."""
        return json.dumps({"host": "127.0.0.1", "port": self.port, "client_id": "cam-1", "ack_timeout_ms": 400,
                           "backoff_min_ms": 50})

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("misbehaviour", ["swallow", "drop"])
def test_lost_puback_is_made_good_by_retransmit(misbehaviour):
    fake = FakeBroker(misbehaviour)
    cfg = fake.client_config()
    try:
        dev = MicroPythonScript("mqtt_pub.py", cfg, json.dumps({"topic": "t", "count": 1, "size": 100, "workers": 1}))
        done = dev.expect("DONE", timeout=10)
        assert dev.wait(5) == 0
        _, _, retransmits, connects = done.split()
        (c1, first1, pid1, p1), (c2, first2, pid2, p2) = fake.publishes[:2]
        assert p1 == p2 == numbered_payload(0, 100)
        assert pid1 == pid2
        assert first1 == 0x32  # QoS 1, not DUP
        if misbehaviour == "swallow":
            # Same connection, our own timer: sent again with DUP set.
            assert (c1, c2) == (1, 1) and first2 == 0x3A and retransmits == "1"
        else:
            # Resent after the reconnect; clean session, so the broker forgot it: sent as new.
            assert (c1, c2) == (1, 2) and first2 == 0x32 and connects == "2"
    finally:
        fake.close()


@pytest.mark.parametrize("misbehaviour", ["swallow", "drop"])
def test_an_expired_message_is_withdrawn_instead_of_resent_and_the_caller_sends_it_anew(misbehaviour):
    """The agent's stale events (docs/PROTOCOL.md section 3): the client asks before every write."""
    fake = FakeBroker(misbehaviour)
    cfg = fake.client_config()
    try:
        dev = MicroPythonScript("mqtt_expire.py", cfg)
        assert dev.expect("EXPIRED", timeout=10).split()[1:] == ["0", "2", "True"]  # withdrawn, asked twice
        dev.expect("DONE", timeout=10)
        assert dev.wait(5) == 0
        # The old bytes went out once; the second message is the caller's new one.
        assert [p for _, _, _, p in fake.publishes] == [b"sealed first", b"sealed again"]
    finally:
        fake.close()


# ---------------------------------------------------------------------------------------
# TLS, against a Mosquitto TLS listener with a CA made for this test


def make_ca_and_server_cert(directory):
    """A self-signed CA and a server certificate for 127.0.0.1 / localhost, as files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vericam test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in ("ca.pem", "ca.der", "server.pem", "server.key")}
    paths["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["ca.der"].write_bytes(ca.public_bytes(serialization.Encoding.DER))
    paths["server.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["server.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                                      serialization.NoEncryption()))
    return paths


def test_tls_connection_publishes_and_receives(tmp_path):
    pki = make_ca_and_server_cert(tmp_path / "pki")
    template = DEFAULT_CONFIG.replace(
        "listener {port} 127.0.0.1\n",
        "listener {port} 127.0.0.1\n"
        f"cafile {pki['ca.pem']}\ncertfile {pki['server.pem']}\nkeyfile {pki['server.key']}\n"
        "tls_version tlsv1.2\n")
    count, size = 50, 8192
    with Broker(tmp_path / "tls-broker", config_template=template) as b:
        dev = MicroPythonScript("mqtt_tls.py", json.dumps({"host": b.host, "port": b.port, "client_id": "cam-tls",
                                                "server_hostname": "localhost"}),
                     str(pki["ca.der"]), "vc/v1/cam-tls/up/capture", str(count), str(size))
        try:
            dev.expect("UP")
            done = dev.expect("DONE", timeout=20)
            _, ms, got = done.split()
            assert int(got) == count
            assert dev.wait(5) == 0
            print(f"\nTLS: {count} x {size} B published and received back in {ms} ms")
        finally:
            dev.stop()
