"""The gateway's clock: the host's, or in a simulated run the scaled world clock that the devices share.

Everything the gateway compares with a device's clock reads `Ingest.clock`: the freshness of
envelope timestamps (5 minutes either way), supervision deadlines (180 s), the time message,
and the times it stores. A simulated run may play the world N times faster than real time
(docs/SIMULATOR.md, "Scaled time"), so that a 5-minute hold window passes in 5 s at N = 60.
Its devices then stamp envelopes with world time, and a gateway on the host clock would see
them drift into the future by minutes a second and refuse them as stale, or raise
supervision faults on devices that heartbeat on time. So the simulator starts the gateway
with the hidden `--sim-time SCALE@EPOCH_MS`, and every process of the run computes the same
world time from the host clock: world = epoch + (host - epoch) * SCALE.

This is for simulation only. A production gateway runs on the host clock, and `sim_clock`
refuses a scaled clock unless the broker is on the loopback interface, where only a
simulated stack puts it.
"""

from __future__ import annotations

import time

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class WorldClock:
    """Seconds since the Unix epoch (a float, like `time.time`), running `scale` x from `epoch_s`."""

    def __init__(self, scale: int = 1, epoch_s: float | None = None):
        if scale < 1:
            raise ValueError(f"the time scale must be a whole number >= 1, not {scale}")
        self.scale = scale
        self.epoch_s = time.time() if epoch_s is None else epoch_s

    def __call__(self) -> float:
        if self.scale == 1:
            return time.time()
        return self.epoch_s + (time.time() - self.epoch_s) * self.scale


def sim_clock(spec: str, broker_host: str) -> WorldClock:
    """The world clock of a simulated run from `SCALE@EPOCH_MS`; refused outside a simulation."""
    scale, sep, epoch_ms = spec.partition("@")
    if not sep or not scale.isdigit() or not epoch_ms.isdigit() or int(scale) < 1:
        raise ValueError(f"--sim-time must be SCALE@EPOCH_MS (whole numbers, scale >= 1), not {spec!r}")
    if broker_host not in LOOPBACK:
        raise ValueError(f"--sim-time is for simulated runs only, whose broker is on the loopback "
                         f"interface; refusing a scaled clock with the broker at {broker_host}")
    return WorldClock(int(scale), int(epoch_ms) / 1000)
