"""Uplink benchmark: a 3-photo alarm over a shaped link, against the physics of that link.

For each link profile the device reaches the broker through the simulator's proxy
(`simulator/netproxy.py`), shaped to the profile's bandwidth and round trip in both
directions. Each run is one intrusion alarm with 3 photos. Measured on the device's own
trace clock:

    delivery = alarm -> the gateway's receipt for the capture arrives at the device

The baseline is the physical minimum on that link: the photos' JPEG bytes at the link's
bandwidth plus one round trip (the bytes have to get there, and the receipt has to come
back). Everything else counts against us: taking and sealing the photos, the sealed
format, the envelopes and MQTT headers, PUBACK windows, the gateway's durable commit.
The ratio delivery / minimum is the figure (the issue's goal is <= 1.5).

Overhead is also reported in its own units: the bytes that crossed the link upwards per
photo beyond the JPEG itself (sealing, chunk and envelope headers, MAC, MQTT, the alarm
event, PUBACKs are downwards and not counted), and the round trips the upload cost beyond
pushing its bytes through the bottleneck, (sealed -> receipt - upload bytes / bandwidth) / RTT.
"""

from __future__ import annotations

import statistics
import time

from simulator.bench.e2e import percentile
from simulator.stack import Stack

DEVICE = "bench-uplink-1"
PROFILES = [
    {"name": "1mbit-100ms", "bandwidth_bps": 1_000_000, "rtt_ms": 100},
    {"name": "256kbit-300ms", "bandwidth_bps": 256_000, "rtt_ms": 300},
]
TRIGGERS = {"disarm": {"enabled": False}, "intrusion": {"enabled": True, "frames": 3, "interval_ms": 0}}


def _last(dev, what: str) -> dict:
    return [t for t in dev.traces if t.get("what") == what][-1]


def _one_alarm(stack: Stack, dev, proxy, profile: dict) -> dict:
    panel = stack.panels[DEVICE]
    n_receipts = dev.trace_count("receipt")
    n_alarms = dev.trace_count("alarm")
    n_frames = len(dev.frames)
    panel.arm("2580")
    time.sleep(0.2)  # exit delay of 0.05 s, and the armed event through the slow link
    up0, down0 = proxy.stats["bytes_up"], proxy.stats["bytes_down"]
    panel.open_zone("pir-1")  # interior zone, armed away: the alarm fires at once
    dev.wait_trace("receipt", n_receipts + 1, timeout=120)
    up, down = proxy.stats["bytes_up"] - up0, proxy.stats["bytes_down"] - down0
    dev.wait_trace("alarm", n_alarms + 1, timeout=5)
    alarm, sealed, receipt = _last(dev, "alarm"), _last(dev, "sealed"), _last(dev, "receipt")
    jpeg_bytes = sum(len(f[2]) for f in dev.frames[n_frames:])
    bw, rtt = profile["bandwidth_bps"], profile["rtt_ms"]
    minimum_ms = jpeg_bytes * 8 / bw * 1000 + rtt
    delivery_ms = receipt["ms"] - alarm["ms"]
    sealed_to_receipt = receipt["ms"] - sealed["ms"]
    panel.disarm("2580")
    time.sleep(0.3 + rtt / 1000 * 2)  # let the disarm event cross the link before the next run
    return {
        "delivery_ms": delivery_ms,
        "minimum_ms": minimum_ms,
        "ratio": delivery_ms / minimum_ms,
        "alarm_to_sealed_ms": sealed["ms"] - alarm["ms"],
        "sealed_to_receipt_ms": sealed_to_receipt,
        "jpeg_bytes": jpeg_bytes,
        "sealed_bytes": int(sealed["bytes"]),
        "bytes_up": up,
        "bytes_down": down,
        "overhead_bytes_per_photo": (up - jpeg_bytes) / 3,
        "overhead_round_trips": (sealed_to_receipt - up * 8 / bw * 1000) / rtt,
    }


def run_uplink(runs: int = 5, profiles: list[dict] | None = None, progress=None) -> dict:
    profiles = profiles or PROFILES
    out = []
    total = runs * len(profiles)
    done = 0
    with Stack() as stack:
        dev = stack.add_device(DEVICE, triggers=TRIGGERS, via_proxy=True,
                               panel_kwargs={"exit_delay_s": 0.05, "entry_delay_s": 0.05})
        proxy = dev.proxy
        dev.boot()
        dev.wait_trace("online", timeout=20)
        for profile in profiles:
            proxy.shape(latency_ms=profile["rtt_ms"] / 2, bandwidth_bps=profile["bandwidth_bps"])
            time.sleep(0.5)
            samples = []
            for _ in range(runs):
                samples.append(_one_alarm(stack, dev, proxy, profile))
                done += 1
                if progress:
                    progress(done, total)

            def p50(key):
                return round(percentile([s[key] for s in samples], 50), 2)

            out.append({
                "link": profile["name"],
                "bandwidth_bps": profile["bandwidth_bps"],
                "rtt_ms": profile["rtt_ms"],
                "runs": runs,
                "jpeg_bytes_p50": int(statistics.median(s["jpeg_bytes"] for s in samples)),
                "sealed_bytes_p50": int(statistics.median(s["sealed_bytes"] for s in samples)),
                "delivery_ms": {"p50": p50("delivery_ms"),
                                "p95": round(percentile([s["delivery_ms"] for s in samples], 95), 1)},
                "minimum_ms_p50": p50("minimum_ms"),
                "ratio_p50": p50("ratio"),
                "ratio_max": round(max(s["ratio"] for s in samples), 2),
                "stages_p50_ms": {"alarm_to_sealed": p50("alarm_to_sealed_ms"),
                                  "sealed_to_receipt": p50("sealed_to_receipt_ms")},
                "bytes_up_p50": int(p50("bytes_up")),
                "bytes_down_p50": int(p50("bytes_down")),
                "overhead_bytes_per_photo_p50": int(p50("overhead_bytes_per_photo")),
                "overhead_round_trips_p50": p50("overhead_round_trips"),
                "samples": [{k: round(v, 1) if isinstance(v, float) else v for k, v in s.items()} for s in samples],
            })
    return {
        "benchmark": "uplink",
        "photos_per_alarm": 3,
        "goal_ratio": 1.5,
        "links": out,
        "note": "delivery = alarm -> receipt at the device (device trace clock); minimum = JPEG bytes / "
                "bandwidth + one RTT. Overhead bytes are everything that went up the link beyond the JPEG "
                "bytes during the delivery, per photo (sealing, envelopes, MQTT, the alarm event). Overhead "
                "round trips = (sealed -> receipt - bytes up / bandwidth) / RTT.",
    }
