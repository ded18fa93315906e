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
    {do = "reboot"}               (the firmware restarts at once, as after a reset, and
                                  boots again on the same flash)
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

`load` checks a whole file before anything starts (every key, step, zone, trigger, `what`
and expectation, and their types) and raises `ScenarioError` naming the file, the step and
the key: `vericam sim run` exits 2 on it.

The link steps act on the device's network proxy (`simulator/netproxy.py`). It is there
when `[device] via_proxy` is true or a table of shaping (`{latency_ms, bandwidth_bps,
loss}`), and whenever a step needs it.

Expectations are compared with the run's figures (`images_at_arc`, `images_captured`,
`device_captures_left`, `image_bytes_sent_without_alarm`, `alarms`, `technical`, ...).
The per-trigger tallies `images_captured_by_trigger`, `images_at_arc_by_trigger` and
`alarms_by_code` are tables ({intrusion = 6, smoke = 2}) compared whole.
The bytes sent without an alarm are counted by an observer subscribed at the broker, not
taken from the device's own report: the broker's read-only observer account, which logs
every message it carries (`run(wire_log=...)`, `vericam sim run --wire-log FILE`).
`captures_recoverable_with_arc_key` is what someone holding the raw flash image and the
ARC's private key opens at the end of the run (`simulator/flash.py`). An expectation named `<figure>_at_most` is an upper
bound on that figure (`shred_late_s_at_most = 2`).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
import shutil
import threading
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from simulator.broker import WireObserver
from simulator.flash import recoverable_with_arc_key
from simulator.panel import ZONES as PANEL_ZONES
from simulator.device import DeviceError
from simulator.mpy import FIRMWARE_DIR
from simulator.panel import PanelError
from simulator.stack import ALARM_EVENTS, Stack

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
PANEL_ACTIONS = {"smoke", "sos", "panic", "tamper", "remove_wall_unit"}
MAX_WAIT_S = 24 * 3600  # one step waits at most a day of scenario time
MAX_TIME_SCALE = 600  # beyond it hold windows and supervision no longer resolve (docs/SIMULATOR.md)
UNITS = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "h": 3600}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|h)\s*$")
LINK_STEPS = {"cut_link", "restore_link", "shape"}

# What a scenario file may say. `load` checks a file against these before anything starts,
# so that a typo is an error naming the file, the step and the key (exit 2), never a
# traceback in the middle of a run or a key silently ignored.
TOP_KEYS = {"name", "description", "settle_timeout", "settle", "time_scale", "device", "step", "expect"}
DEVICE_KEYS = {"id", "triggers", "hold_window_ms", "flash_blocks", "exit_delay_s", "entry_delay_s",
               "via_proxy", "config"}
TRIGGER_KEYS = {"enabled", "frames", "interval_ms", "sends"}
# step -> {key: kind}; kinds: pin, mode, zone, what, count, timeout, duration, bool, number,
# cut_mode, loss. Keys marked required are listed in STEP_REQUIRED.
STEP_KEYS: dict[str, dict[str, str]] = {
    "arm": {"pin": "pin", "mode": "mode"},
    "disarm": {"pin": "pin"},
    "open": {"zone": "zone"},
    **{action: {} for action in sorted(PANEL_ACTIONS)},
    "wait_for": {"what": "what", "count": "count", "timeout": "timeout"},
    "check": {"what": "what", "count": "count0"},
    "stop_gateway": {"kill": "bool"},
    "start_gateway": {},
    "restart_broker": {"down_s": "duration"},
    "power_cut": {},
    "boot": {},
    "reboot": {},
    "cut_link": {"for_s": "duration", "mode": "cut_mode"},
    "restore_link": {},
    "shape": {"latency_ms": "number", "bandwidth_bps": "number", "loss": "loss"},
}
STEP_REQUIRED = {"arm": ("pin",), "disarm": ("pin",), "open": ("zone",), "wait_for": ("what",),
                 "check": ("what",)}
# Every trace the firmware can report (`hal.trace("...")` in firmware/vericam/*.py; the test
# suite checks that this list and the firmware agree): what `wait_for` and `check` can count.
DEVICE_TRACES = {
    "alarm", "boot", "camera_failed", "camera_missing", "capture_failed", "capture_sent", "capturing", "clock_set",
    "cover", "cover_discarded", "cover_receipt", "cover_sent", "cover_skipped",
    "downlink_rejected", "dropped", "event_resealed", "event_sent", "flash_full", "heartbeat", "heartbeat_failed", "held", "mem",
    "mqtt", "ntp", "ntp_failed", "online", "panel", "panel_garbled", "panel_rejected", "receipt",
    "receipt_ignored", "receipt_timeout", "refused_by_arc", "resend", "sealed", "send", "shredded", "shredding",
    "smoke", "technical", "time_refused", "uplink_retry", "wifi_connecting", "wifi_error",
    "wifi_unconfigured", "wifi_up",
}
# The run's figures (see `_figures` and `run`) and the kind of value each is compared with.
FIGURES = {
    "images_captured": "int", "images_at_arc": "int", "duplicates_stored": "int", "captures_at_arc": "int",
    "image_bytes_sent_without_alarm": "int", "capture_bytes_at_broker": "int", "covers_at_arc": "int",
    "cover_bytes_at_broker": "int",
    "device_captures_left": "int", "alarms": "list", "alarms_by_code": "table",
    "images_captured_by_trigger": "table", "images_at_arc_by_trigger": "table", "technical": "list",
    "shredded_on_device": "int", "receipt_timeouts": "int", "heartbeats_sent": "int",
    "shred_late_s": "number", "shredded_early": "int", "device_online": "bool", "link": "table",
    "scenario": "str", "time_scale": "int", "real_s": "number", "scenario_s": "number",
    "wire_messages": "int", "wire_bytes": "int",
    "sealed_headers_on_flash": "int", "data_keys_unwrapped_with_arc_key": "int",
    "capture_keys_recoverable_with_arc_key": "int", "captures_recoverable_with_arc_key": "int",
}


class ScenarioError(ValueError):
    pass


def list_scenarios() -> list[dict]:
    """The scenarios in simulator/scenarios/: name, description, path, time_scale, steps.

    A file that does not load is listed with its `error` instead of hiding the others."""
    out = []
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        try:
            data = load(path)
        except ScenarioError as exc:
            out.append({"name": path.stem, "description": "", "path": str(path), "error": str(exc)})
            continue
        out.append({"name": data["name"], "description": data.get("description", ""), "path": str(path),
                    "time_scale": data.get("time_scale", 1), "steps": len(data.get("step", []))})
    return out


def find(name_or_path: str) -> Path:
    """A scenario file from its path, its file name in simulator/scenarios/ or its `name`."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    candidate = SCENARIO_DIR / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    listed = list_scenarios()
    for item in listed:
        if item["name"] == name_or_path:
            return Path(item["path"])
    known = ", ".join(s["name"] for s in listed)
    raise ScenarioError(f"no scenario {name_or_path!r}: give a file or one of: {known}")


def load(path: Path) -> dict:
    """Read a scenario file and check every key of it; a `ScenarioError` names what is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it: {exc.strerror}") from None
    if not isinstance(data.get("name"), str):
        raise ScenarioError(f"{path}: a scenario needs a name (a string)")
    _no_unknown(data, TOP_KEYS, f"{path}", "top-level key", "[device], [[step]] and [expect] are tables")
    for key in ("settle_timeout", "settle"):
        if key in data:
            _number(data[key], f"{path}: '{key}'", low=0)
    for table in ("device", "expect"):
        if not isinstance(data.get(table, {}), dict):
            raise ScenarioError(f"{path}: '{table}' must be a table ([{table}])")
    _check_device(path, data.get("device", {}))
    steps = data.get("step", [])
    if not isinstance(steps, list):
        raise ScenarioError(f"{path}: 'step' must be an array of tables ([[step]])")
    for i, step in enumerate(steps):
        _check_step(f"{path}: step {i + 1}", step)
    _check_expect(path, data.get("expect", {}))
    scale = data.get("time_scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_TIME_SCALE:
        raise ScenarioError(f"{path}: 'time_scale' must be a whole number in 1..{MAX_TIME_SCALE}, not {scale!r}")
    return data


def _no_unknown(table: dict, known, where: str, what: str, hint: str = "") -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            advice = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
            raise ScenarioError(f"{where}: unknown {what} {key!r}; {advice}" + (f" ({hint})" if hint else ""))


def _number(value, what: str, low: float | None = None, high: float | None = None, whole: bool = False):
    kind = "a whole number" if whole else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if whole else (int, float))
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in {low:g}..{high:g}" if low is not None and high is not None else (
            f" >= {low:g}" if low is not None else "")
        raise ScenarioError(f"{what} must be {kind}{bounds}, not {value!r}")
    return value


@functools.lru_cache(maxsize=1)
def _firmware_policy():
    """The firmware's own policy module (plain Python), to check triggers as the device will.

    Loaded once: `sim list` checks every scenario file, most of which name triggers."""
    spec = importlib.util.spec_from_file_location(
        "_vericam_firmware_policy", FIRMWARE_DIR / "vericam" / "policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_device(path, dev: dict) -> None:
    where = f"{path}: [device]"
    _no_unknown(dev, DEVICE_KEYS, where, "key", "other device configuration goes in [device.config]")
    if "id" in dev and not (isinstance(dev["id"], str) and dev["id"]):
        raise ScenarioError(f"{where}: 'id' must be a non-empty string, not {dev['id']!r}")
    for key in ("exit_delay_s", "entry_delay_s"):
        if key in dev:
            _number(dev[key], f"{where}: '{key}'", low=0, high=MAX_WAIT_S)
    if "hold_window_ms" in dev:
        _number(dev["hold_window_ms"], f"{where}: 'hold_window_ms'", low=0, whole=True)
    if "flash_blocks" in dev:
        _number(dev["flash_blocks"], f"{where}: 'flash_blocks'", low=16, whole=True)
    proxy = dev.get("via_proxy", False)
    if isinstance(proxy, dict):
        _no_unknown(proxy, {"latency_ms", "bandwidth_bps", "loss"}, f"{where}: via_proxy", "key")
    elif not isinstance(proxy, bool):
        raise ScenarioError(f"{where}: 'via_proxy' must be true, false or a table of shaping, not {proxy!r}")
    if "config" in dev and not isinstance(dev["config"], dict):
        raise ScenarioError(f"{where}: 'config' must be a table, not {dev['config']!r}")
    triggers = dev.get("triggers")
    if triggers is None:
        return
    if not isinstance(triggers, dict):
        raise ScenarioError(f"{where}: 'triggers' must be a table of triggers, not {triggers!r}")
    policy = _firmware_policy()
    for name, cfg in triggers.items():
        _no_unknown({name: 0}, set(policy.DEFAULT_TRIGGERS), f"{where}: triggers", "trigger")
        if not isinstance(cfg, dict):
            raise ScenarioError(f"{where}: triggers.{name} must be a table such as "
                                f"{{ enabled = true, frames = 2 }}, not {cfg!r}")
        _no_unknown(cfg, TRIGGER_KEYS, f"{where}: triggers.{name}", "key")
        for key in ("enabled", "sends"):
            if key in cfg and not isinstance(cfg[key], bool):
                raise ScenarioError(f"{where}: triggers.{name}.{key} must be true or false, not {cfg[key]!r}")
        for key in ("frames", "interval_ms"):
            if key in cfg:
                _number(cfg[key], f"{where}: triggers.{name}.{key}", whole=True)
    try:
        policy.trigger_table(triggers)
    except policy.PolicyError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _check_step(where: str, step) -> None:
    if not isinstance(step, dict):
        raise ScenarioError(f"{where} is not a table")
    if "do" not in step:
        if "wait" not in step:
            raise ScenarioError(f"{where} has neither 'do' nor 'wait': {step}")
        _no_unknown(step, {"wait"}, where, "key", "a wait step is only {wait = DURATION}")
        step["wait"] = duration_s(step["wait"], f"{where}: 'wait'")
        return
    do = step["do"]
    if not isinstance(do, str):
        raise ScenarioError(f"{where}: 'do' must be a string, not {do!r}")
    if do not in STEP_KEYS:
        _no_unknown({do: 0}, set(STEP_KEYS), where, "step")
    keys = STEP_KEYS[do]
    if "wait" in step:
        raise ScenarioError(f"{where} ({do}): a step has either 'do' or 'wait', not both; "
                            "put the wait in a step of its own")
    where = f"{where} ({do})"
    _no_unknown({k: v for k, v in step.items() if k != "do"}, set(keys), where, "key",
                f"a {do!r} step takes " + (", ".join(keys) if keys else "no other key"))
    for key in STEP_REQUIRED.get(do, ()):
        if key not in step:
            raise ScenarioError(f"{where}: '{key}' is missing")
    for key, kind in keys.items():
        if key not in step:
            continue
        value, what = step[key], f"{where}: '{key}'"
        if kind == "pin":
            if not (isinstance(value, str) and value.isdigit()):
                raise ScenarioError(f"{what} must be the PIN as a string of digits, such as \"2580\", not {value!r}")
        elif kind == "mode" and value not in ("away", "home"):
            raise ScenarioError(f"{what} must be \"away\" or \"home\", not {value!r}")
        elif kind == "cut_mode" and value not in ("blackhole", "reset"):
            raise ScenarioError(f"{what} must be \"blackhole\" or \"reset\", not {value!r}")
        elif kind == "zone" and (not isinstance(value, str) or value not in PANEL_ZONES):
            raise ScenarioError(f"{what}: the panel has no zone {value!r}; zones: {', '.join(PANEL_ZONES)}")
        elif kind == "what":
            if not isinstance(value, str) or value not in DEVICE_TRACES:
                close = difflib.get_close_matches(str(value), DEVICE_TRACES, n=1)
                raise ScenarioError(f"{what}: the device never reports {value!r}; "
                                    + (f"did you mean {close[0]!r}?" if close else
                                       f"it reports: {', '.join(sorted(DEVICE_TRACES))}"))
        elif kind == "count":
            _number(value, what, low=1, whole=True)
        elif kind == "count0":
            _number(value, what, low=0, whole=True)
        elif kind == "timeout":
            _number(value, what + " (real seconds)", low=0.1, high=3600)
        elif kind == "duration":
            step[key] = duration_s(value, what)
        elif kind == "bool" and not isinstance(value, bool):
            raise ScenarioError(f"{what} must be true or false, not {value!r}")
        elif kind == "number":
            _number(value, what, low=0)
        elif kind == "loss":
            _number(value, what, low=0, high=1)


def _check_expect(path, expect: dict) -> None:
    where = f"{path}: [expect]"
    for key, want in expect.items():
        figure = key[:-len("_at_most")] if key.endswith("_at_most") else key
        if figure not in FIGURES:
            close = difflib.get_close_matches(figure, FIGURES, n=1)
            raise ScenarioError(f"{where}: unknown key {key!r}: the run has no figure {figure!r}; "
                                + (f"did you mean {close[0]!r}?" if close else
                                   f"figures: {', '.join(sorted(FIGURES))}"))
        kind = FIGURES[figure]
        if figure != key:
            if kind not in ("int", "number"):
                raise ScenarioError(f"{where}: {key!r}: an upper bound needs a numeric figure; {figure!r} is not")
            _number(want, f"{where}: {key!r}")
            continue
        ok = {"int": lambda v: not isinstance(v, bool) and isinstance(v, int),
              "number": lambda v: v is None or (not isinstance(v, bool) and isinstance(v, (int, float))),
              "bool": lambda v: isinstance(v, bool),
              "str": lambda v: isinstance(v, str),
              "list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
              "table": lambda v: isinstance(v, dict)}[kind](want)
        if not ok:
            shape = {"int": "a whole number", "number": "a number", "bool": "true or false", "str": "a string",
                     "list": 'a list of strings, such as ["intrusion"]', "table": "a table, such as {intrusion = 2}"}
            raise ScenarioError(f"{where}: {key!r} must be {shape[kind]}, not {want!r}")


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
    """What crosses the broker, seen by its observer account and not taken from the device.

    Keeps the wire log (every message: scenario seconds, topic, size, QoS, retain) and counts
    the capture bytes before and after the first alarm the panel raised. Cover (PROTOCOL §4.4)
    looks like photos at the broker, as it must; `figures` is told which captures the gateway
    found to be cover, by their capture ids, which the broker sees in the chunk headers."""

    def __init__(self, stack: Stack):
        timeline = stack.timeline
        self.wire = WireObserver(stack.broker, clock=lambda: timeline.scenario_s(time.time()), t0=0.0)
        self._lock = threading.Lock()
        self._alarm_at: int | None = None  # how many messages the log held when the first alarm was raised

    def alarm_raised(self) -> None:
        with self._lock:
            if self._alarm_at is None:
                self._alarm_at = len(self.wire.snapshot())

    def figures(self, covers: set[str] = frozenset()) -> dict:
        """Wire figures; `covers` are the capture ids (hex) the gateway recorded as cover."""
        records = self.wire.snapshot()
        with self._lock:
            alarm_at = len(records) if self._alarm_at is None else self._alarm_at
            ids = dict(self.wire.capture_ids)
        capture = [i for i, r in enumerate(records) if r["topic"].endswith("/up/capture")]
        cover = {i for i in capture if ids.get(i) in covers}
        return {
            "image_bytes_sent_without_alarm": sum(records[i]["bytes"] for i in capture if i < alarm_at and i not in cover),
            "capture_bytes_at_broker": sum(records[i]["bytes"] for i in capture),
            "cover_bytes_at_broker": sum(records[i]["bytes"] for i in cover),
            "wire_messages": len(records),
            "wire_bytes": sum(r["bytes"] for r in records),
        }

    def close(self) -> None:
        self.wire.close()


def run(path: Path, workdir: Path | None = None, flash_out: Path | None = None, echo=None,
        timeline=None, time_scale: int | None = None, wire_log: Path | None = None, dc09=None,
        dc09_account: str = "1234") -> dict:
    """Play one scenario; returns its figures, `passed` and the failed expectations.

    Pass a `Timeline` to keep the run's timeline (`Timeline.render` prints it as a table).
    `time_scale` overrides the scenario's own (scaled time: see the module's docstring).
    `wire_log` writes every message the broker carried as JSON lines
    `{"t", "topic", "bytes", "qos", "retain"}` (`t` in scenario seconds since the start),
    also when the run fails. With `dc09` settings (`gateway.forward.config.Settings`) the
    gateway forwards the alarms to those receivers, the device reported under `dc09_account`;
    `result["dc09"]` lists the reports and which receiver acknowledged each."""
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
    stack = Stack(workdir, timeline, dc09=dc09, dc09_account=dc09_account)
    step_failures: list[str] = []
    observer = None
    try:
        stack.start()
        observer = BrokerObserver(stack)
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
            try:
                failure = _play(stack, device_id, step)
            except PanelError as exc:
                # The file asks the panel for something it cannot do in the state the
                # earlier steps left it in (arm while armed): the scenario is wrong.
                raise ScenarioError(f"{path}: step {i + 1} ({step.get('do')}): the panel refused: {exc}") from None
            except DeviceError as exc:
                # A `wait_for` ran out of time: the story did not happen; the steps after it
                # would play against a different story, so stop here and report the figures.
                step_failures.append(f"step {i + 1} ({step.get('do')}): {exc}")
                break
            if failure:
                step_failures.append(f"step {i + 1} ({step.get('do')}): {failure}")
        expect = spec.get("expect", {})
        # Let deliveries finish: wait (bounded) for the expected photos and receipts.
        settle = float(spec.get("settle_timeout", 30))
        if "images_at_arc" in expect:
            try:
                stack.wait_images(device_id, int(expect["images_at_arc"]), timeout=settle)
            except Exception:
                pass
        _wait_covers(dev, settle)
        time.sleep(float(spec.get("settle", 0.5)))
        online = _device_online(stack, device_id)
        dev.stop()
        result = _figures(stack, device_id, observer)
        if dc09 is not None:
            result["dc09"] = stack.wait_dc09_acked(0, timeout=settle)
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
        if wire_log:
            result["wire_log"] = str(wire_log)
        failures = step_failures + _check(expect, result)
        result["passed"] = not failures
        result["failures"] = failures
        return result
    finally:
        if observer:
            if wire_log:
                observer.wire.write_jsonl(wire_log)
            observer.close()
        stack.close()


def _wait_covers(dev, timeout: float) -> None:
    """Wait (bounded) until every cover the device sent has its receipt: a story that ends right
    after the photos it is about must not leave the cover that followed a disarm on the flash."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        traces = list(dev.traces)
        sent = sum(1 for t in traces if t.get("what") == "cover" and t.get("sent"))
        if sum(1 for t in traces if t.get("what") == "cover_receipt") >= sent:
            return
        time.sleep(0.05)


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
        panel.arm(step["pin"], step.get("mode", "away"))
    elif do == "disarm":
        panel.disarm(step["pin"])
    elif do == "open":
        panel.open_zone(step["zone"])
    elif do in PANEL_ACTIONS:
        getattr(panel, do)()
    elif do == "wait_for":
        count, timeout = int(step.get("count", 1)), float(step.get("timeout", 30))
        try:
            dev.wait_trace(step["what"], count, timeout=timeout)
        except DeviceError:
            raise DeviceError(f"waited {timeout:g} real seconds for {count} x {step['what']!r}; "
                              f"the device reported {dev.trace_count(step['what'])}") from None
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
    elif do == "reboot":
        # A reset, not a power cut: the simulator restarts the firmware on purpose. The
        # device stops at once (nothing flushed, as machine.reset() does) and boots again
        # on the same flash.
        stack.timeline.add("device", "reboot")
        dev.stop()
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
        for row in s.devices.list():
            if row.get("id") == device_id:
                return bool(row.get("online"))
    return None


def _figures(stack: Stack, device_id: str, observer: BrokerObserver) -> dict:
    dev = stack.devices[device_id]
    with stack.store() as s:
        images = s.images.list(device_id)
        alarms = s.alarms.list(device_id)
        events = s.events.list(device_id)
        captures = s.captures.list(device_id)
        arc_key = s.keys.arc_private_key()
    covers = {c["capture_id"] for c in captures if c["status"] == "cover"}
    keys = [(r["capture_id"], r["frame_index"]) for r in images]
    return {
        "images_captured": len(dev.frames),
        "images_at_arc": len(images),
        "duplicates_stored": len(keys) - len(set(keys)),
        # a cover is not a capture of anything: counted apart, and its bytes told apart on the wire
        "captures_at_arc": sum(1 for c in captures if c["status"] != "cover"),
        "covers_at_arc": len(covers),
        **observer.figures(covers),
        "device_captures_left": stack.device_captures_left(device_id),
        # What a raw dump of the chip opens with the ARC's private key, free blocks included.
        **recoverable_with_arc_key(dev.flash_path, arc_key),
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
