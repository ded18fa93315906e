"""MQTT 3.1.1 packet codec, sans-IO: bytes in, packets out, and packets in, bytes out.

Theory of operation
-------------------
The codec knows nothing about sockets or time. Encoders turn one outgoing packet into
bytes; PUBLISH is split so that only its small head (fixed header, topic, packet id) is
built here and the payload is written to the network by the caller straight from wherever
it lives, never copied. `Decoder` takes whatever bytes the network produced with `feed()`
and hands back complete packets one at a time with `next()`; a packet larger than the
cap raises before it is buffered, so a broken or hostile peer cannot exhaust RAM.

Only what a device needs is here: QoS 0 and 1, no QoS 2, and the client side of the
protocol (the decoder refuses packets only a server may receive). Every malformed input
raises `MQTTProtocolError`; nothing asserts.
"""

from struct import pack, unpack_from

# Control packet types (high nibble of the first byte), MQTT 3.1.1 section 2.2.1.
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

# The remaining length is a base-128 varint of at most 4 bytes (section 2.2.3).
MAX_REMAINING_LENGTH = 268435455

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

# SUBACK return code for a refused subscription (section 3.9.3).
SUBACK_FAILURE = 0x80


class MQTTError(Exception):
    """Base class of every MQTT error raised by this package."""


class MQTTProtocolError(MQTTError):
    """The peer sent bytes that are not valid MQTT 3.1.1: drop the connection and reconnect."""


class MQTTConnectRefused(MQTTError):
    """The broker answered CONNECT with a non-zero return code (see `code`)."""

    def __init__(self, code):
        self.code = code
        reason = CONNACK_REASONS.get(code, "unknown reason")
        super().__init__("broker refused the connection: code %d, %s; check the device's "
                         "credentials and the broker ACL" % (code, reason))


# ---------------------------------------------------------------------------------------
# Encoding


def encode_remaining_length(n):
    """The varint form of a remaining length, 1 to 4 bytes."""
    if n < 0 or n > MAX_REMAINING_LENGTH:
        raise ValueError("remaining length %d outside 0..%d" % (n, MAX_REMAINING_LENGTH))
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_remaining_length(buf, offset=0, end=None):
    """(value, offset just after the varint), or None if `buf` ends inside the varint.

    Raises MQTTProtocolError if the varint runs past its 4-byte limit.
    """
    if end is None:
        end = len(buf)
    value = 0
    shift = 0
    for i in range(4):
        pos = offset + i
        if pos >= end:
            return None
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + 1
        shift += 7
    raise MQTTProtocolError("remaining length longer than 4 bytes")


def _utf8(s, what):
    # MQTT strings are UTF-8 with a 16-bit length prefix (section 1.5.3).
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 0xFFFF:
        raise ValueError("%s is %d bytes, the limit is 65535" % (what, len(b)))
    return b


def _check_pid(pid):
    if not 0 < pid <= 0xFFFF:
        raise ValueError("packet id %r outside 1..65535" % (pid,))


def _check_qos(qos):
    if qos not in (0, 1):
        raise ValueError("QoS %r not supported: use 0 or 1" % (qos,))


def _check_topic_name(topic):
    t = _utf8(topic, "topic")
    if not t:
        raise ValueError("empty topic")
    if b"+" in t or b"#" in t:
        raise ValueError("wildcards are not allowed in a topic name: %r" % (topic,))
    return t


def _fixed_header(first, remaining, out):
    out.append(first)
    out.extend(encode_remaining_length(remaining))


def connect(client_id, clean_session=True, keepalive_s=60, user=None, password=None,
            will_topic=None, will_payload=b"", will_qos=0, will_retain=False):
    """A CONNECT packet (section 3.1)."""
    cid = _utf8(client_id, "client id")
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive %r outside 0..65535 s" % (keepalive_s,))
    flags = 0x02 if clean_session else 0
    fields = [cid]
    if will_topic is not None:
        _check_qos(will_qos)
        wp = bytes(will_payload)
        if len(wp) > 0xFFFF:
            raise ValueError("will payload is %d bytes, the limit is 65535" % len(wp))
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        fields.append(_check_topic_name(will_topic))
        fields.append(wp)
    if user is not None:
        flags |= 0x80
        fields.append(_utf8(user, "user name"))
    if password is not None:
        if user is None:
            # Section 3.1.2.9: a password without a user name is a protocol violation.
            raise ValueError("a password needs a user name")
        flags |= 0x40
        fields.append(_utf8(password, "password"))
    # Variable header: protocol name "MQTT", level 4 (3.1.1), flags, keepalive.
    var = pack("!H4sBBH", 4, b"MQTT", 4, flags, keepalive_s)
    remaining = len(var)
    for f in fields:
        remaining += 2 + len(f)
    out = bytearray()
    _fixed_header(CONNECT << 4, remaining, out)
    out.extend(var)
    for f in fields:
        out.extend(pack("!H", len(f)))
        out.extend(f)
    return bytes(out)


def publish_head(topic, payload_len, qos=0, pid=0, dup=False, retain=False):
    """Everything of a PUBLISH packet before its payload (section 3.3).

    The caller writes this head and then the payload itself, so a large payload is never
    copied into a packet buffer.
    """
    t = _check_topic_name(topic)
    _check_qos(qos)
    if qos:
        _check_pid(pid)
    if dup and not qos:
        raise ValueError("DUP must be 0 for QoS 0 (section 3.3.1.1)")
    first = (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    var_len = 2 + len(t) + (2 if qos else 0)
    out = bytearray()
    _fixed_header(first, var_len + payload_len, out)
    out.extend(pack("!H", len(t)))
    out.extend(t)
    if qos:
        out.extend(pack("!H", pid))
    return bytes(out)


def puback(pid):
    """A PUBACK for an incoming QoS-1 PUBLISH (section 3.4)."""
    _check_pid(pid)
    return pack("!BBH", PUBACK << 4, 2, pid)


def subscribe(pid, topics):
    """A SUBSCRIBE packet (section 3.8) for a list of (topic filter, qos) pairs."""
    _check_pid(pid)
    if not topics:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    enc = []
    remaining = 2
    for topic, qos in topics:
        _check_qos(qos)
        t = _utf8(topic, "topic filter")
        if not t:
            raise ValueError("empty topic filter")
        enc.append((t, qos))
        remaining += 2 + len(t) + 1
    out = bytearray()
    # Section 3.8.1: the low nibble of SUBSCRIBE's first byte is reserved and must be 0b0010.
    _fixed_header((SUBSCRIBE << 4) | 0x02, remaining, out)
    out.extend(pack("!H", pid))
    for t, qos in enc:
        out.extend(pack("!H", len(t)))
        out.extend(t)
        out.append(qos)
    return bytes(out)


PINGREQ_PACKET = bytes((PINGREQ << 4, 0))
DISCONNECT_PACKET = bytes((DISCONNECT << 4, 0))


def pingreq():
    return PINGREQ_PACKET


def disconnect():
    return DISCONNECT_PACKET


# ---------------------------------------------------------------------------------------
# Decoding


class Connack:
    kind = CONNACK

    def __init__(self, session_present, code):
        self.session_present = session_present
        self.code = code

    def check(self):
        """Raise MQTTConnectRefused unless the broker accepted the connection."""
        if self.code:
            raise MQTTConnectRefused(self.code)
        return self


class Publish:
    kind = PUBLISH

    def __init__(self, topic, payload, qos, pid, dup, retain):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.pid = pid
        self.dup = dup
        self.retain = retain


class Puback:
    kind = PUBACK

    def __init__(self, pid):
        self.pid = pid


class Suback:
    kind = SUBACK

    def __init__(self, pid, granted):
        self.pid = pid
        # One entry per requested filter: the granted QoS, or SUBACK_FAILURE (0x80).
        self.granted = granted

    def failed(self):
        return SUBACK_FAILURE in self.granted


class Pingresp:
    kind = PINGRESP


PINGRESP_INSTANCE = Pingresp()


class Decoder:
    """Incremental decoder of packets a client receives from its broker.

    `feed(data)` appends bytes; `next()` returns the next complete packet or None when more
    bytes are needed. `max_packet` caps a whole packet (fixed header included).
    """

    def __init__(self, max_packet=16384):
        self.max_packet = max_packet
        self._buf = bytearray()
        self._off = 0  # start of the first unconsumed byte in _buf

    def feed(self, data):
        if self._off and self._off == len(self._buf):
            # Everything was consumed: reuse the buffer from the start.
            self._buf[0:] = b""
            self._off = 0
        self._buf.extend(data)

    def buffered(self):
        """How many received bytes are not yet part of a returned packet."""
        return len(self._buf) - self._off

    def reset(self):
        """Forget partial input, e.g. after the connection was dropped."""
        self._buf = bytearray()
        self._off = 0

    def __iter__(self):
        return self

    def __next__(self):
        p = self.next()
        if p is None:
            raise StopIteration
        return p

    def next(self):
        buf = self._buf
        start = self._off
        end = len(buf)
        if end - start < 2:
            return None
        first = buf[start]
        r = decode_remaining_length(buf, start + 1, end)
        if r is None:
            return None
        length, body = r
        total = body - start + length
        if total > self.max_packet:
            raise MQTTProtocolError("incoming packet of %d bytes exceeds the %d-byte cap"
                                    % (total, self.max_packet))
        if end - body < length:
            return None
        pkt = self._parse(first, buf, body, length)
        self._off = body + length
        if self._off > 4096 and self._off * 2 > len(buf):
            # Compact so a long-lived buffer does not grow with everything ever received.
            buf[0:self._off] = b""
            self._off = 0
        return pkt

    def _parse(self, first, buf, at, length):
        kind = first >> 4
        flags = first & 0x0F
        if kind == PUBLISH:
            return self._parse_publish(flags, buf, at, length)
        if kind == PUBACK:
            self._expect(kind, flags, 0, length, 2)
            return Puback(unpack_from("!H", buf, at)[0])
        if kind == CONNACK:
            self._expect(kind, flags, 0, length, 2)
            ack_flags = buf[at]
            if ack_flags & 0xFE:
                raise MQTTProtocolError("CONNACK with reserved flag bits 0x%02x" % ack_flags)
            return Connack(bool(ack_flags & 1), buf[at + 1])
        if kind == SUBACK:
            if flags or length < 3:
                raise MQTTProtocolError("malformed SUBACK (flags %d, length %d)" % (flags, length))
            granted = bytes(buf[at + 2:at + length])
            for g in granted:
                if g not in (0, 1, 2, SUBACK_FAILURE):
                    raise MQTTProtocolError("SUBACK with invalid return code 0x%02x" % g)
            return Suback(unpack_from("!H", buf, at)[0], granted)
        if kind == PINGRESP:
            self._expect(kind, flags, 0, length, 0)
            return PINGRESP_INSTANCE
        raise MQTTProtocolError("unexpected packet type %d from the broker" % kind)

    @staticmethod
    def _expect(kind, flags, want_flags, length, want_length):
        if flags != want_flags or length != want_length:
            raise MQTTProtocolError("malformed packet type %d (flags %d, length %d)"
                                    % (kind, flags, length))

    @staticmethod
    def _parse_publish(flags, buf, at, length):
        qos = (flags >> 1) & 3
        if qos == 3:
            raise MQTTProtocolError("PUBLISH with QoS 3")
        if qos == 2:
            # We never subscribe with QoS 2, so a broker must not send it (section 3.8.4).
            raise MQTTProtocolError("PUBLISH with QoS 2 on a QoS <= 1 subscription")
        end = at + length
        mv = memoryview(buf)  # slice without an intermediate copy
        if length < 2:
            raise MQTTProtocolError("PUBLISH too short for its topic length")
        tlen = unpack_from("!H", buf, at)[0]
        pos = at + 2 + tlen
        if pos + (2 if qos else 0) > end:
            raise MQTTProtocolError("PUBLISH topic runs past the packet")
        try:
            topic = str(bytes(mv[at + 2:pos]), "utf-8")
        except UnicodeError:
            raise MQTTProtocolError("PUBLISH topic is not UTF-8")
        pid = 0
        if qos:
            pid = unpack_from("!H", buf, pos)[0]
            if pid == 0:
                raise MQTTProtocolError("QoS-1 PUBLISH with packet id 0")
            pos += 2
        return Publish(topic, bytes(mv[pos:end]), qos, pid, bool(flags & 8), bool(flags & 1))
