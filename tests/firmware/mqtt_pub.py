"""MicroPython side of the publish tests: send `count` numbered QoS-1 messages, report each PUBACK.

argv[1]: JSON client config (merged over the client's DEFAULTS); argv[2]: JSON options
{"topic", "count", "size", "workers", "pace_ms"}. Each payload starts with its number
("%08d") and is filled with a fixed pattern, so the subscriber can check content and count
distinct messages. Prints "UP", one "ACK <n>" per message, then "DONE <ms> <retransmits>
<connects>".
"""

import asyncio
import json
import sys
import time

from vericam.mqtt import MQTTClient


def log(level, msg):
    print("LOG", level, msg)


async def worker(client, opts, state):
    size = opts["size"]
    buf = bytearray(size)  # reused: publish returns only after PUBACK, so it is free again
    for i in range(8, size):
        buf[i] = (i * 7) & 0xFF
    while state["next"] < opts["count"]:
        n = state["next"]
        state["next"] += 1
        buf[0:8] = b"%08d" % n
        await client.publish(opts["topic"], buf, qos=1)
        print("ACK", n)
        if opts.get("pace_ms"):
            await asyncio.sleep_ms(opts["pace_ms"])


async def main():
    cfg = json.loads(sys.argv[1])
    opts = json.loads(sys.argv[2])
    client = MQTTClient(cfg, log=log)
    sup = asyncio.create_task(client.run())
    await client.up.wait()
    print("UP")
    state = {"next": 0}
    t0 = time.ticks_ms()
    await asyncio.gather(*[worker(client, opts, state) for _ in range(opts.get("workers", 1))])
    ms = time.ticks_diff(time.ticks_ms(), t0)
    print("DONE", ms, client.retransmits, client.connects)
    await client.disconnect()
    await sup


asyncio.run(main())
