"""Scenarios: readable TOML timelines of panel actions and faults, with the outcome they must produce.

A scenario file (see `simulator/scenarios/*.toml`) has a `[device]` table (trigger
configuration, hold window, flash size, panel delays), a list of `[[step]]` tables played
in order, and an `[expect]` table checked at the end. Steps:

    {do = "arm", pin = "2580", mode = "away"}     {do = "disarm", pin = "2580"}
    {do = "open", zone = "door-1"}                {do = "smoke"} / "sos" / "panic" / "tamper"
    {do = "remove_wall_unit"}                     {wait = 1.5} / {wait = "4 min"}
    {do = "wait_for", what = "receipt", count = 1, timeout = 30}   (a device trace)
    {do = "check", what = "shredded", count = 0}  (the device has reported `what` exactly
                                  `count` times so far; a failed expectation otherwise)
    {do = "stop_gateway"} / "start_gateway" / "restart_broker" / "power_cut" / "boot"
    {do = "cut_link", for_s = 18, mode = "blackhole"}  (mode "reset" resets connections;
                                  without for_s the link stays down until restore_link)
    {do = "restore_link"}
    {do = "shape", latency_ms = 50, bandwidth_bps = 256000, loss = 0.0}
                                  (latency one way; bandwidth_bps = 0 lifts the cap)

Scaled time: a top-level `time_scale = N` (or `vericam sim run --time-scale N`) plays the
scenario N x faster than real time, so that a 5-minute hold window passes in 5 s at N = 60
while the device keeps its default configuration. Every duration in a step (`wait`,
`for_s`, `down_s`) and the panel's delays are scenario time; `wait_for`'s `timeout` is a
guard in real seconds, because uploads and broker round trips take real time at any scale.
The device, the gateway and the simulator share one world clock (docs/SIMULATOR.md).

The link steps act on the device's network proxy (`simulator/netproxy.py`). It is there
when `[device] via_proxy` is true or a table of shaping (`{latency_ms, bandwidth_bps,
loss}`), and whenever a step needs it.

Expectations are compared with the run's figures (`images_at_arc`, `images_captured`,
`device_captures_left`, `image_bytes_sent_without_alarm`, `alarms`, `technical`, ...).
The per-trigger tallies `images_captured_by_trigger`, `images_at_arc_by_trigger` and
`alarms_by_code` are tables ({intrusion = 6, smoke = 2}) compared whole.
The bytes sent without an alarm are counted by an observer subscribed at the broker, not
taken from the device's own report. An expectation named `<figure>_at_most` is an upper
bound on that figure (`shred_late_s_at_most = 2`).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from simulator.stack import ALARM_EVENTS, Stack

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
PANEL_ACTIONS = {"smoke", "sos", "panic", "tamper", "remove_wall_unit"}
MAX_WAIT_S = 24 * 3600  # one step waits at most a day of scenario time
MAX_TIME_SCALE = 600  # beyond it hold windows and supervision no longer resolve (docs/SIMULATOR.md)
UNITS = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "h": 3600}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|h)\s*$")
LINK_STEPS = {"cut_link", "restore_link", "shape"}


class ScenarioError(ValueError):
    pass


def list_scenarios() -> list[dict]:
    out = []
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        data = load(path)
        out.append({"name": data["name"], "file": str(path), "description": data.get("description", "")})
    return out


def find(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    candidate = SCENARIO_DIR / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    known = ", ".join(s["name"] for s in list_scenarios())
    raise ScenarioError(f"no scenario {name_or_path!r}: give a file or one of: {known}")


def load(path: Path) -> dict:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it: {exc.strerror}") from None
    if not isinstance(data.get("name"), str):
        raise ScenarioError(f"{path}: a scenario needs a name (a string)")
    for table in ("device", "expect"):
        if not isinstance(data.get(table, {}), dict):
            raise ScenarioError(f"{path}: '{table}' must be a table ([{table}])")
    steps = data.get("step", [])
    if not isinstance(steps, list):
        raise ScenarioError(f"{path}: 'step' must be an array of tables ([[step]])")
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ScenarioError(f"{path}: step {i + 1} is not a table")
        if "do" not in step and "wait" not in step:
            raise ScenarioError(f"{path}: step {i + 1} has neither 'do' nor 'wait': {step}")
        if "do" in step and not isinstance(step["do"], str):
            raise ScenarioError(f"{path}: step {i + 1}: 'do' must be a string")
        if "wait" in step:
            step["wait"] = duration_s(step["wait"], f"{path}: step {i + 1}: 'wait'")
    scale = data.get("time_scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_TIME_SCALE:
        raise ScenarioError(f"{path}: 'time_scale' must be a whole number in 1..{MAX_TIME_SCALE}, not {scale!r}")
    return data


def duration_s(value, what: str) -> float:
    """Scenario seconds from a number of seconds or a text such as "4 min", "90 s", "1.5 h"."""
    if isinstance(value, str):
        m = DURATION.match(value)
        if not m:
            raise ScenarioError(f"{what} must be seconds or a duration such as \"4 min\", not {value!r}")
        value = float(m.group(1)) * UNITS[m.group(2)]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_WAIT_S:
        raise ScenarioError(f"{what} must be a duration in 0..{MAX_WAIT_S} s of scenario time, not {value!r}")
    return float(value)


class BrokerObserver:
    """Counts what crosses the broker on the devices' up topics, by an independent subscriber."""

    def __init__(self, host: str, port: int):
        self.capture_bytes = 0
        self.capture_bytes_before_alarm = 0
        self.alarm_seen = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"observer-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe("vc/v1/+/up/capture", qos=1)
        self.client.loop_start()

    def alarm_raised(self) -> None:
        self.alarm_seen.set()

    def _on_message(self, _c, _u, msg) -> None:
        with self._lock:
            self.capture_bytes += len(msg.payload)
            if not self.alarm_seen.is_set():
                self.capture_bytes_before_alarm += len(msg.payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run(path: Path, workdir: Path | None = None, flash_out: Path | None = None, echo=None,
        timeline=None, time_scale: int | None = None) -> dict:
    """Play one scenario; returns its figures, `passed` and the failed expectations.

    Pass a `Timeline` to keep the run's timeline (`Timeline.render` prints it as a table).
    `time_scale` overrides the scenario's own (scaled time: see the module's docstring)."""
    from simulator.timeline import Timeline

    spec = load(path)
    if time_scale is not None:
        if not 1 <= time_scale <= MAX_TIME_SCALE:
            raise ScenarioError(f"the time scale must be in 1..{MAX_TIME_SCALE}, not {time_scale}")
        spec["time_scale"] = time_scale
    scale = spec.get("time_scale", 1)
    dev_spec = spec.get("device", {})
    device_id = dev_spec.get("id", "panel-1")
    timeline = timeline or Timeline(echo=echo)
    timeline.set_scale(scale)  # scenario time starts now
    stack = Stack(workdir, timeline)
    step_failures: list[str] = []
    observer = None
    try:
        stack.start()
        observer = BrokerObserver(stack.broker.host, stack.broker.port)
        panel_kwargs = {k: dev_spec[k] for k in ("exit_delay_s", "entry_delay_s") if k in dev_spec}
        via_proxy = dev_spec.get("via_proxy", False)
        if not via_proxy and any(st.get("do") in LINK_STEPS for st in spec.get("step", [])):
            via_proxy = True
        dev = stack.add_device(device_id, triggers=dev_spec.get("triggers"),
                               hold_window_ms=dev_spec.get("hold_window_ms"),
                               flash_blocks=dev_spec.get("flash_blocks", 512),
                               panel_kwargs=panel_kwargs, via_proxy=via_proxy,
                               extra_config=dev_spec.get("config"))
        original_bus = stack.panels[device_id].bus

        def bus(event, **fields):
            if event in ALARM_EVENTS:
                observer.alarm_raised()
            original_bus(event, **fields)

        stack.panels[device_id].bus = bus
        dev.boot()
        dev.wait_trace("online", timeout=20)
        for i, step in enumerate(spec.get("step", [])):
            failure = _play(stack, device_id, step)
            if failure:
                step_failures.append(f"step {i + 1}: {failure}")
        expect = spec.get("expect", {})
        # Let deliveries finish: wait (bounded) for the expected photos and receipts.
        settle = float(spec.get("settle_timeout", 30))
        if "images_at_arc" in expect:
            try:
                stack.wait_images(device_id, int(expect["images_at_arc"]), timeout=settle)
            except Exception:
                pass
        time.sleep(float(spec.get("settle", 0.5)))
        online = _device_online(stack, device_id)
        dev.stop()
        result = _figures(stack, device_id, observer)
        result["device_online"] = online
        if dev.proxy is not None:
            result["link"] = dict(dev.proxy.stats)
        result["scenario"] = spec["name"]
        result["time_scale"] = scale
        result["real_s"] = round(time.time() - timeline.t0, 3)
        result["scenario_s"] = round(timeline.scenario_s(time.time()), 3)
        if flash_out:
            Path(flash_out).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dev.flash_path, flash_out)
            result["flash_image"] = str(flash_out)
        failures = step_failures + _check(expect, result)
        result["passed"] = not failures
        result["failures"] = failures
        return result
    finally:
        if observer:
            observer.close()
        stack.close()


def _sleep(stack: Stack, scenario_s: float) -> None:
    """Let `scenario_s` seconds of scenario time pass (scenario_s / time_scale real seconds)."""
    time.sleep(scenario_s / stack.timeline.scale)


def _play(stack: Stack, device_id: str, step: dict) -> str | None:
    """Carry out one step; returns what went wrong when a `check` step fails."""
    dev = stack.devices[device_id]
    panel = stack.panels[device_id]
    if "wait" in step and "do" not in step:
        _sleep(stack, step["wait"])
        return None
    do = step["do"]
    if do == "arm":
        panel.arm(str(step.get("pin", "2580")), step.get("mode", "away"))
    elif do == "disarm":
        panel.disarm(str(step.get("pin", "2580")))
    elif do == "open":
        panel.open_zone(step["zone"])
    elif do in PANEL_ACTIONS:
        getattr(panel, do)()
    elif do == "wait_for":
        dev.wait_trace(step["what"], int(step.get("count", 1)), timeout=float(step.get("timeout", 30)))
    elif do == "check":
        seen, want = dev.trace_count(step["what"]), int(step.get("count", 0))
        if seen != want:
            return f"expected {want} x {step['what']!r} by now, the device reported {seen}"
    elif do == "stop_gateway":
        stack.stop_gateway(kill=bool(step.get("kill", False)))
    elif do == "start_gateway":
        stack.start_gateway()
    elif do == "restart_broker":
        stack.broker.stop()
        stack.timeline.add("broker", "broker stopped")
        _sleep(stack, duration_s(step.get("down_s", 1), "restart_broker's 'down_s'"))
        stack.broker.start()
        stack.timeline.add("broker", "broker started again")
    elif do == "power_cut":
        dev.kill()
    elif do in LINK_STEPS:
        _link_step(stack, dev, do, step)
    elif do == "boot":
        dev.boot()
    else:
        raise ScenarioError(f"unknown step {do!r}")
    return None


def _link_step(stack: Stack, dev, do: str, step: dict) -> None:
    proxy = dev.proxy
    if proxy is None:
        raise ScenarioError(f"step {do!r} needs the device behind a proxy: set [device] via_proxy = true")
    if do == "cut_link":
        mode = step.get("mode", "blackhole")
        proxy.cut(mode)
        stack.timeline.add("network", f"link DOWN ({mode})")
        if "for_s" in step:
            _sleep(stack, duration_s(step["for_s"], "cut_link's 'for_s'"))
            proxy.restore()
            stack.timeline.add("network", f"link up again after {float(step['for_s']):g} s")
    elif do == "restore_link":
        proxy.restore()
        stack.timeline.add("network", "link up again")
    elif do == "shape":
        bw = step.get("bandwidth_bps")
        proxy.shape(latency_ms=step.get("latency_ms"), bandwidth_bps=bw or None, loss=step.get("loss"),
                    unlimited=bw == 0)
        stack.timeline.add("network", "link shaped: " + ", ".join(
            f"{k}={step[k]}" for k in ("latency_ms", "bandwidth_bps", "loss") if k in step))


def _device_online(stack: Stack, device_id: str) -> bool | None:
    """What the ARC believes: the device's status as the gateway last accepted it."""
    with stack.store() as s:
        for row in s.list_devices():
            if row.get("id") == device_id:
                return bool(row.get("online"))
    return None


def _figures(stack: Stack, device_id: str, observer: BrokerObserver) -> dict:
    dev = stack.devices[device_id]
    with stack.store() as s:
        images = s.list_images(device_id)
        alarms = s.list_alarms(device_id)
        events = s.list_events(device_id)
        captures = s.list_captures(device_id)
    keys = [(r["capture_id"], r["frame_index"]) for r in images]
    return {
        "images_captured": len(dev.frames),
        "images_at_arc": len(images),
        "duplicates_stored": len(keys) - len(set(keys)),
        "captures_at_arc": len(captures),
        "image_bytes_sent_without_alarm": observer.capture_bytes_before_alarm,
        "capture_bytes_at_broker": observer.capture_bytes,
        "device_captures_left": stack.device_captures_left(device_id),
        "alarms": sorted({a.get("code") for a in alarms if a.get("code")}),
        "alarms_by_code": _tally(a.get("code") for a in alarms if a.get("code")),
        "images_captured_by_trigger": _tally(trigger for trigger, _i, _j in dev.frames),
        "images_at_arc_by_trigger": _tally(r.get("trigger") for r in images),
        "technical": sorted({e.get("code") for e in events if e.get("kind") == "technical" and e.get("code")}),
        "shredded_on_device": dev.trace_count("shredded"),
        "receipt_timeouts": dev.trace_count("receipt_timeout"),
        "heartbeats_sent": dev.trace_count("heartbeat"),
        **_hold_window_timing(dev.traces),
    }


def _hold_window_timing(traces: list[dict]) -> dict:
    """When held captures were shredded against their hold-window end, on the device's clock.

    `shred_late_s`: the latest shred after its window ended, in scenario seconds (None when
    nothing held was shredded). `shredded_early`: shreds before the window ended; must be 0.
    """
    until = {t["capture"]: t["until_ms"] for t in traces if t.get("what") == "held" and "until_ms" in t}
    late = [t["ms"] - until[t["capture"]] for t in traces
            if t.get("what") == "shredded" and t.get("capture") in until]
    return {"shred_late_s": max(late) / 1000 if late else None,
            "shredded_early": sum(1 for d in late if d < 0)}


def _tally(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _check(expect: dict, result: dict) -> list[str]:
    failures = []
    for key, want in expect.items():
        if key.endswith("_at_most"):
            got = result.get(key[:-len("_at_most")])
            if got is None or got > want:
                failures.append(f"{key[:-len('_at_most')]}: expected at most {want!r}, got {got!r}")
            continue
        got = result.get(key)
        if isinstance(want, list):
            ok = sorted(want) == sorted(got or [])
        else:
            ok = got == want
        if not ok:
            failures.append(f"{key}: expected {want!r}, got {got!r}")
    return failures
