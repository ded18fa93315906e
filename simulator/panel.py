"""The simulated alarm panel: users and PINs, exit and entry delays, zones, and the events it puts on the bus.

The panel resolves a PIN to a user slot itself, as a real panel does, so the device only
ever hears "disarmed by slot 2": a PIN never reaches the firmware, the network or a log.
Its timers (exit delay, entry delay) run on threads, in scenario time: `time_scale` x faster
than wall-clock time in a scaled run.
"""

from __future__ import annotations

import threading
from typing import Callable

# entry: starts the entry delay; instant: alarms at once; interior: alarms at once when armed
# away, and is bypassed when armed home (the household moves about inside).
ZONE_KINDS = ("entry", "instant", "interior")
# The panel every scenario has: a door (entry zone), an interior motion detector and a window.
ZONES = {"door-1": "entry", "pir-1": "interior", "window-1": "instant"}


class PanelError(ValueError):
    pass


class Panel:
    """An alarm panel that drives one device through `bus(event, **fields)`."""

    def __init__(self, bus: Callable[..., None], note: Callable[[str], None],
                 users: dict[int, str] | None = None, duress_pin: str = "9999",
                 exit_delay_s: float = 1.0, entry_delay_s: float = 2.0,
                 zones: dict[str, str] | None = None, time_scale: int = 1):
        self.bus = bus
        self.time_scale = time_scale
        self.note = note
        self.users = users or {1: "1234", 2: "2580"}
        self.duress_pin = duress_pin
        self.exit_delay_s = exit_delay_s
        self.entry_delay_s = entry_delay_s
        self.zones = zones or dict(ZONES)
        for name, kind in self.zones.items():
            if kind not in ZONE_KINDS:
                raise PanelError(f"zone {name}: kind must be one of {ZONE_KINDS}, not {kind!r}")
        self.state = "disarmed"      # disarmed | exit_delay | armed | entry_delay | alarm
        self.mode: str | None = None
        self.siren = False
        self.alarms: list[str] = []
        self._timer: threading.Timer | None = None
        self._lock = threading.RLock()

    # -- keypad -------------------------------------------------------------------------------

    def _slot_for(self, pin: str) -> int | None:
        for slot, user_pin in self.users.items():
            if user_pin == pin:
                return slot
        return None

    def arm(self, pin: str, mode: str = "away") -> None:
        with self._lock:
            slot = self._slot_for(pin)
            if slot is None:
                self.note("keypad: wrong PIN, not armed")
                return
            if self.state != "disarmed":
                raise PanelError(f"cannot arm while {self.state}")
            self.state, self.mode = "exit_delay", mode
            self.note(f"user slot {slot} arms ({mode}); exit delay {self.exit_delay_s:g} s")
            self._start_timer(self.exit_delay_s, self._exit_delay_over, slot)

    def _exit_delay_over(self, slot: int) -> None:
        with self._lock:
            if self.state == "exit_delay":
                self.state = "armed"
                self.note(f"armed {self.mode}")
                self.bus("armed", slot=slot, mode=self.mode)

    def disarm(self, pin: str) -> None:
        with self._lock:
            if pin == self.duress_pin:
                # Looks like a normal disarm at the keypad; silently an alarm at the ARC.
                self._cancel_timer()
                self.state, self.mode, self.siren = "disarmed", None, False
                self.note("keypad: disarmed (duress code)")
                self.bus("duress_disarm")
                return
            slot = self._slot_for(pin)
            if slot is None:
                self.note("keypad: wrong PIN")
                return
            self._cancel_timer()
            was = self.state
            self.state, self.mode, self.siren = "disarmed", None, False
            self.note(f"user slot {slot} disarms")
            self.bus("disarmed", slot=slot)
            if was == "alarm":
                self.bus("alarm_cancelled", slot=slot)

    # -- zones and detectors ------------------------------------------------------------------

    def open_zone(self, zone: str) -> None:
        with self._lock:
            kind = self.zones.get(zone)
            if kind is None:
                raise PanelError(f"unknown zone {zone!r}; zones: {', '.join(self.zones)}")
            self.note(f"zone {zone} opened")
            if self.state != "armed":
                return
            if kind == "interior" and self.mode == "home":
                self.note(f"zone {zone} bypassed (armed home)")
                return
            if kind == "entry":
                self.state = "entry_delay"
                self.note(f"entry delay {self.entry_delay_s:g} s")
                self.bus("entry_delay")
                self._start_timer(self.entry_delay_s, self._entry_delay_over, zone)
            else:
                self._alarm("intrusion_alarm", zone)

    def _entry_delay_over(self, zone: str) -> None:
        with self._lock:
            if self.state == "entry_delay":
                self.note("entry delay over, no disarm")
                self._alarm("intrusion_alarm", zone)

    def smoke(self) -> None:
        self._alarm("smoke", "smoke detector")

    def sos(self) -> None:
        self._alarm("sos", "SOS button")

    def panic(self) -> None:
        self._alarm("panic", "panic button")

    def remove_wall_unit(self) -> None:
        self._alarm("silent_alarm", "wall unit removed", siren=False)

    def tamper(self) -> None:
        self._alarm("tamper", "tamper switch")

    def _alarm(self, event: str, source: str, siren: bool = True) -> None:
        with self._lock:
            self._cancel_timer()
            self.state = "alarm"
            self.siren = self.siren or siren
            self.alarms.append(event)
            self.note(f"{event} from {source}" + ("; siren on" if siren else " (silent)"))
            self.bus(event)

    # -- timers -------------------------------------------------------------------------------

    def _start_timer(self, delay: float, fn, *args) -> None:
        self._cancel_timer()
        self._timer = threading.Timer(delay / self.time_scale, fn, args)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        """Stop the exit or entry delay that is running, if any: the panel is switched off."""
        with self._lock:
            self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer = None
