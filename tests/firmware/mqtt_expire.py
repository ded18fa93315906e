"""MicroPython side of the shelf-life test: a message that expires is withdrawn, never resent.

argv[1]: JSON client config. Publishes b"sealed first" with an `expired` check that says
"expired" from its second question on, so the first send goes out and any resend does not.
Prints "EXPIRED <in flight> <questions>" (or "DELIVERED"), then publishes b"sealed again"
without a check and prints "DONE <connects>".
"""

import asyncio
import json
import sys

from vericam.mqtt import MQTTClient, MQTTExpired, MQTTTimeout


async def main():
    client = MQTTClient(json.loads(sys.argv[1]), log=lambda level, msg: print("LOG", level, msg))
    sup = asyncio.create_task(client.run())
    await client.up.wait()
    asked = [0]

    def expired():
        asked[0] += 1
        return asked[0] > 1

    try:
        await client.publish("vc/t", b"sealed first", 1, False, 10000, expired)
        print("DELIVERED")
    except MQTTExpired:
        print("EXPIRED", len(client._inflight), asked[0], isinstance(MQTTExpired(), MQTTTimeout))
    await client.publish("vc/t", b"sealed again", 1, False, 10000)
    print("DONE", client.connects)
    await client.disconnect()
    await sup


asyncio.run(main())
