"""Device entry point: pick the HAL for this platform and run the Vericam agent."""

import sys


def _hal():
    if sys.platform in ("linux", "darwin"):
        # The unix port: hardware is played by the simulator (simulator/device.py).
        from vericam.hal_sim import SimHal
        return SimHal(sys.argv[1:])
    from vericam.hal_esp32 import Esp32Hal
    return Esp32Hal()


def main():
    from vericam.agent import main as run_agent
    run_agent(_hal())


main()
