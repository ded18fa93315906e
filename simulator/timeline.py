"""The timeline of a simulated run: who did what, and when, in one readable table."""

from __future__ import annotations

import threading
import time

from gateway.ingest.clock import WorldClock


class Timeline:
    """Thread-safe record of (time, source, text) entries; times are relative to its start.

    Entries are stamped with the host clock. A run in scaled time (`set_scale`) shows them
    in scenario time, which runs `scale` x faster from the start, beside the real seconds.
    `clock` is the run's world clock, which the stack hands to the devices and the gateway.
    """

    def __init__(self, echo=None, scale: int = 1):
        self.entries: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._echo = echo
        self.set_scale(scale)

    def set_scale(self, scale: int) -> None:
        """Start scenario time now, running `scale` x real time."""
        self.clock = WorldClock(scale)
        self.t0 = self.clock.epoch_s

    @property
    def scale(self) -> int:
        return self.clock.scale

    def scenario_s(self, at: float) -> float:
        """Scenario seconds since the start at host time `at`."""
        return (at - self.t0) * self.clock.scale

    def add(self, source: str, text: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        with self._lock:
            self.entries.append((at, source, text))
        if self._echo:
            self._echo(self.scenario_s(at), source, text)

    def sorted(self) -> list[tuple[float, str, str]]:
        with self._lock:
            return sorted(self.entries, key=lambda e: e[0])

    def render(self, console, title: str = "Timeline") -> None:
        from rich.table import Table
        scaled = self.clock.scale != 1
        if scaled:
            title += f" (scenario time at {self.clock.scale} x real time)"
        table = Table(title=title, show_lines=False)
        table.add_column("t", justify="right", style="cyan", no_wrap=True)
        if scaled:
            table.add_column("real (s)", justify="right", style="dim", no_wrap=True)
        table.add_column("who", style="magenta", no_wrap=True)
        table.add_column("what")
        for at, source, text in self.sorted():
            cells = [clock_text(self.scenario_s(at))]
            if scaled:
                cells.append(f"{at - self.t0:7.3f}")
            table.add_row(*cells, source, text)
        console.print(table)


def clock_text(seconds: float) -> str:
    """Scenario time as H:MM:SS.mmm (or M:SS.mmm under an hour)."""
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h}:{m:02d}:{s:02d}.{ms:03d}" if h else f"{m}:{s:02d}.{ms:03d}"
