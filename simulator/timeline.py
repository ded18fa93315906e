"""The timeline of a simulated run: who did what, and when, in one readable table."""

from __future__ import annotations

import threading
import time


class Timeline:
    """Thread-safe record of (time, source, text) entries; times are relative to its start."""

    def __init__(self, echo=None):
        self.t0 = time.time()
        self.entries: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._echo = echo

    def add(self, source: str, text: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        with self._lock:
            self.entries.append((at, source, text))
        if self._echo:
            self._echo(at - self.t0, source, text)

    def sorted(self) -> list[tuple[float, str, str]]:
        with self._lock:
            return sorted(self.entries, key=lambda e: e[0])

    def render(self, console, title: str = "Timeline") -> None:
        from rich.table import Table
        table = Table(title=title, show_lines=False)
        table.add_column("t (s)", justify="right", style="cyan", no_wrap=True)
        table.add_column("who", style="magenta", no_wrap=True)
        table.add_column("what")
        for at, source, text in self.sorted():
            table.add_row(f"{at - self.t0:7.3f}", source, text)
        console.print(table)
