"""MicroPython side of the timeout test: a publish while the broker is down must give up.

argv[1]: JSON client config; argv[2]: topic; argv[3]: timeout in ms. Publishes once while
connected ("UP"), waits for the connection to drop ("DOWN"), then publishes with the
timeout and prints "TIMEOUT <elapsed ms>" or "DELIVERED <elapsed ms>".
"""

import asyncio
import json
import sys
import time

from vericam.mqtt import MQTTClient, MQTTTimeout


async def main():
    client = MQTTClient(json.loads(sys.argv[1]), log=lambda level, msg: print("LOG", level, msg))
    topic = sys.argv[2]
    timeout = int(sys.argv[3])
    sup = asyncio.create_task(client.run())
    await client.up.wait()
    await client.publish(topic, b"before", timeout_ms=timeout)
    print("UP")
    await client.down.wait()
    print("DOWN")
    payload = b"kept by the caller"
    t0 = time.ticks_ms()
    try:
        await client.publish(topic, payload, timeout_ms=timeout)
        print("DELIVERED", time.ticks_diff(time.ticks_ms(), t0))
    except MQTTTimeout:
        print("TIMEOUT", time.ticks_diff(time.ticks_ms(), t0), len(client._inflight), payload.decode())
    await client.disconnect()
    await sup


asyncio.run(main())
