"""MicroPython side of the receive test: subscribe, print each message, stop after `count`.

argv[1]: JSON client config; argv[2]: topic filter; argv[3]: how many messages to wait for.
Prints "UP <connects>" each time the connection (and so the subscription) is up, then
"MSG <topic> <payload hex> " per message, and "DONE" at the end.
"""

import asyncio
import json
import sys
from binascii import hexlify

from vericam.mqtt import MQTTClient

got = []


def on_message(topic, payload):
    got.append(1)
    print("MSG", topic, hexlify(payload).decode())


async def announce(client):
    while True:
        await client.up.wait()
        print("UP", client.connects)
        await client.down.wait()


async def main():
    client = MQTTClient(json.loads(sys.argv[1]), on_message=on_message,
                        log=lambda level, msg: print("LOG", level, msg))
    client.subscribe(sys.argv[2], 1)
    sup = asyncio.create_task(client.run())
    asyncio.create_task(announce(client))
    while len(got) < int(sys.argv[3]):
        await asyncio.sleep_ms(20)
    print("DONE")
    await client.disconnect()
    await sup


asyncio.run(main())
