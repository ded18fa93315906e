"""MicroPython side of the last-will test: connect with a will, then wait to be killed.

argv[1]: JSON client config including "will". Prints "UP" once connected.
"""

import asyncio
import json
import sys

from vericam.mqtt import MQTTClient


async def main():
    cfg = json.loads(sys.argv[1])
    cfg["will"] = (cfg["will"][0], cfg["will"][1].encode(), cfg["will"][2], cfg["will"][3])
    client = MQTTClient(cfg, log=lambda level, msg: print("LOG", level, msg))
    asyncio.create_task(client.run())
    await client.up.wait()
    print("UP")
    while True:
        await asyncio.sleep_ms(1000)


asyncio.run(main())
