"""End-to-end benchmark: alarm-to-stored latency against the raw MQTT round trip of the same bytes."""

from __future__ import annotations

import statistics
import threading
import time

import paho.mqtt.client as mqtt

from simulator.stack import Stack

DEVICE = "bench-1"
# The device is given the same chunking and window as the baseline, so the two move the
# same messages: the comparison is protocol and pipeline against bare MQTT, nothing else.
CHUNK = 2048
WINDOW = 8


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def raw_round_trip_ms(host: str, port: int, nbytes: int, chunk: int = CHUNK, window: int = WINDOW) -> float:
    """Publish nbytes in chunk-sized QoS-1 messages with `window` in flight; time until a
    subscriber on the same broker has them all. The same bytes, broker and chunking as the
    device uses, with no sealing, verification or storage: the floor for the pipeline."""
    count = (nbytes + chunk - 1) // chunk
    got = threading.Event()
    received = [0]
    topic = f"bench/raw/{time.monotonic_ns()}"

    def on_message(_c, _u, _m):
        received[0] += 1
        if received[0] >= count:
            got.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-sub-{time.monotonic_ns()}")
    sub.on_message = on_message
    sub.connect(host, port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-pub-{time.monotonic_ns()}")
    pub.max_inflight_messages_set(window)
    pub.connect(host, port)
    pub.loop_start()
    time.sleep(0.2)  # let the subscription settle
    payload = bytes(chunk)
    t0 = time.perf_counter()
    for i in range(count):
        pub.publish(topic, payload if i < count - 1 else payload[: nbytes - chunk * (count - 1)], qos=1)
    ok = got.wait(30)
    elapsed = (time.perf_counter() - t0) * 1000
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    if not ok:
        raise RuntimeError(f"raw baseline: only {received[0]} of {count} messages arrived")
    return elapsed


def run_e2e(runs: int = 20, progress=None) -> dict:
    """Play `runs` burglaries on one device; measure each alarm-to-stored and a baseline."""
    triggers = {"disarm": {"enabled": False}, "intrusion": {"enabled": True, "frames": 3, "interval_ms": 0}}
    latencies: list[float] = []
    baselines: list[float] = []
    sealed_sizes: list[int] = []
    capture_ms: list[float] = []   # alarm -> capture sealed on flash (camera + seal + flash)
    deliver_ms: list[float] = []   # sealed -> last image durable at the gateway
    with Stack() as stack:
        dev = stack.add_device(DEVICE, triggers=triggers,
                               panel_kwargs={"exit_delay_s": 0.05, "entry_delay_s": 0.05},
                               extra_config={"chunk_size": CHUNK, "send_window": WINDOW})
        dev.boot()
        dev.wait_trace("online", timeout=20)
        panel = stack.panels[DEVICE]
        for run in range(runs):
            before = len(stack.images_at_arc(DEVICE))
            n_receipts = dev.trace_count("receipt")
            panel.arm("2580")
            time.sleep(0.15)
            panel.open_zone("door-1")
            dev.wait_trace("receipt", n_receipts + 1, timeout=60)
            rows = stack.wait_images(DEVICE, before + 3, timeout=60)
            alarm_ms = stack.alarm_sent_ms[DEVICE][-1]
            new = sorted(rows, key=lambda r: r["stored_at_ms"])[before:]
            stored_ms = max(r["stored_at_ms"] for r in new)
            latencies.append(stored_ms - alarm_ms)
            sealed = [t for t in dev.traces if t.get("what") == "sealed"][-1]
            capture_ms.append(sealed["ms"] - alarm_ms)
            deliver_ms.append(stored_ms - sealed["ms"])
            sent = [t for t in dev.traces if t.get("what") == "capture_sent"][-1]
            sealed_sizes.append(int(sent["bytes"]))
            baselines.append(raw_round_trip_ms(stack.broker.host, stack.broker.port, sealed_sizes[-1]))
            panel.disarm("2580")
            time.sleep(0.1)
            if progress:
                progress(run + 1, runs)
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    b50, b95 = percentile(baselines, 50), percentile(baselines, 95)
    return {
        "benchmark": "e2e",
        "runs": runs,
        "frames_per_alarm": 3,
        "sealed_capture_bytes_p50": int(statistics.median(sealed_sizes)),
        "alarm_to_stored_ms": {"p50": round(p50, 1), "p95": round(p95, 1)},
        "raw_mqtt_round_trip_ms": {"p50": round(b50, 1), "p95": round(b95, 1)},
        "stages_p50_ms": {"alarm_to_sealed": round(percentile(capture_ms, 50), 1),
                          "sealed_to_stored": round(percentile(deliver_ms, 50), 1)},
        "ratio_p50": round(p50 / b50, 2),
        "ratio_p95": round(p95 / b95, 2),
        "ratio_sealed_to_stored_p50": round(percentile(deliver_ms, 50) / b50, 2),
        "note": "alarm_to_stored includes rendering 3 JPEGs in the simulator's camera and sealing them "
                "on MicroPython; the baseline is the same bytes in the same chunks over the same broker, "
                "nothing else. sealed_to_stored is the part the baseline compares with directly.",
    }
