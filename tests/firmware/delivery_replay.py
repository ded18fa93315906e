"""Replaying delivery histories on MicroPython with the same checks as on CPython.

    micropython tests/firmware/delivery_replay.py HISTORIES.json

HISTORIES.json is a JSON list of [history, power_loss] pairs (see delivery_model.py: a
history, and the device's configuration of the power_loss trigger it is played with),
written by tests/test_delivery_properties.py from what hypothesis generated. Prints one JSON line per
history, {"i": index, "ok": summary} or {"i": index, "broken": why}, then a last line
{"histories": n, "broken": m}, and exits 1 if any history broke a promise.
"""

import json
import sys


def parent(path):
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else ("/" if cut == 0 else ".")


HERE = parent(__file__)
sys.path.append(parent(parent(HERE)) + "/firmware")  # runs without MICROPYPATH too
sys.path.append(HERE)

from delivery_model import Broken, play  # noqa: E402


def main(path):
    with open(path) as f:
        histories = json.load(f)
    broken = 0
    for i, (history, power_loss) in enumerate(histories):
        try:
            print(json.dumps({"i": i, "ok": play(history, power_loss)}))
        except Broken as e:
            broken += 1
            print(json.dumps({"i": i, "broken": str(e)}))
    print(json.dumps({"histories": len(histories), "broken": broken}))
    if broken:
        sys.exit(1)


main(sys.argv[1])
