"""MicroPython side of the codec test: encode and decode what the pytest side asks for.

Reads one JSON object from stdin: {"encode": [[function, kwargs], ...],
"decode": [[hex, chunk, max_packet], ...]} and prints one JSON object with the results,
bytes as hex, so the test can compare them with bytes it built independently.
"""

import json
import sys
from binascii import hexlify, unhexlify

from vericam.mqtt import codec


def hx(b):
    return hexlify(b).decode()


def describe(p):
    k = p.kind
    if k == codec.CONNACK:
        d = {"type": "connack", "session_present": p.session_present, "code": p.code}
        try:
            p.check()
        except codec.MQTTConnectRefused as e:
            d["refused"] = e.code
        return d
    if k == codec.PUBLISH:
        return {"type": "publish", "topic": p.topic, "payload": hx(p.payload), "qos": p.qos,
                "pid": p.pid, "dup": p.dup, "retain": p.retain}
    if k == codec.PUBACK:
        return {"type": "puback", "pid": p.pid}
    if k == codec.SUBACK:
        return {"type": "suback", "pid": p.pid, "granted": list(p.granted), "failed": p.failed()}
    if k == codec.PINGRESP:
        return {"type": "pingresp"}
    return {"type": "?"}


def main():
    req = json.loads(sys.stdin.read())
    out = {"encode": [], "decode": [], "varint": []}
    for name, kwargs in req["encode"]:
        for key in ("will_payload",):
            if key in kwargs:
                kwargs[key] = unhexlify(kwargs[key])
        if name == "subscribe":
            kwargs["topics"] = [tuple(t) for t in kwargs["topics"]]
        try:
            out["encode"].append(hx(getattr(codec, name)(**kwargs)))
        except ValueError as e:
            out["encode"].append("ValueError")
    for n in req["varint"]:
        try:
            enc = codec.encode_remaining_length(n)
            back = codec.decode_remaining_length(enc)
            out["varint"].append([hx(enc), back[0], back[1]])
        except ValueError:
            out["varint"].append("ValueError")
    for data, chunk, cap in req["decode"]:
        dec = codec.Decoder(cap)
        raw = unhexlify(data)
        got = []
        try:
            # Feed in small pieces to exercise the incremental path.
            for i in range(0, len(raw), chunk):
                dec.feed(memoryview(raw)[i:i + chunk])
                for p in dec:
                    got.append(describe(p))
            got.append({"left": dec.buffered()})
        except codec.MQTTProtocolError as e:
            got.append({"error": "MQTTProtocolError", "msg": str(e)})
        out["decode"].append(got)
    print(json.dumps(out))


main()
