"""MicroPython side of the TLS test: publish over TLS and get the messages back.

argv[1]: JSON client config (without "ssl"); argv[2]: CA certificate (DER) path;
argv[3]: topic; argv[4]: count; argv[5]: size. Subscribes to the topic, publishes `count`
numbered messages and waits until every one came back. Prints "UP", then
"DONE <ms> <received>".
"""

import asyncio
import json
import sys
import time

import tls

from vericam.mqtt import MQTTClient

received = set()


def on_message(topic, payload):
    received.add(bytes(payload[:8]))


async def main():
    cfg = json.loads(sys.argv[1])
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    with open(sys.argv[2], "rb") as f:
        ctx.load_verify_locations(f.read())  # tls takes the DER bytes positionally
    cfg["ssl"] = ctx
    topic, count, size = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    client = MQTTClient(cfg, on_message=on_message, log=lambda level, msg: print("LOG", level, msg))
    client.subscribe(topic, 1)
    sup = asyncio.create_task(client.run())
    await client.up.wait()
    print("UP")
    buf = bytearray(size)
    t0 = time.ticks_ms()
    for n in range(count):
        buf[0:8] = b"%08d" % n
        await client.publish(topic, buf, timeout_ms=5000)
    deadline = time.ticks_add(time.ticks_ms(), 5000)
    while len(received) < count and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        await asyncio.sleep_ms(10)
    print("DONE", time.ticks_diff(time.ticks_ms(), t0), len(received))
    await client.disconnect()
    await sup


asyncio.run(main())
