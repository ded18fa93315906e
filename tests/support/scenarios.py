"""Full-stack scenarios played at most once per test session; every test that asks gets the same result.

A scenario run costs seconds to a minute of real MicroPython, Mosquitto and gateway time,
and several tests check different things about the same run. `Scenarios.play(name)` plays
`simulator/scenarios/<name>.toml` the first time it is asked for (at its own time scale, or
`time_scale`), keeping the flash image, the device's traces and the timeline, and hands the
same `Played` to every later caller. Tests must only read what they get.

Under pytest-xdist each worker has a cache of its own. `make test` runs `--dist loadfile`
(all tests of a file on one worker), so the tests that share a run live in one file: each
scenario has one home file (tests/test_scenarios.py, PLAYED_ELSEWHERE). `--dist loadgroup`
with `xdist_group` marks would allow more, but it groups nothing on pytest 9.2
(pytest-xdist issue #1386: node ids are no longer mutable).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from simulator import scenario
from simulator.timeline import Timeline


@dataclass(frozen=True)
class Played:
    """One run: its figures (`vericam sim run --json`), the device's traces, the timeline, the files."""

    name: str
    time_scale: int | None
    result: dict
    traces: list[dict] = field(repr=False)
    timeline: Timeline = field(repr=False)
    flash: Path = field(repr=False)    # the device's raw flash image at the end of the run
    workdir: Path = field(repr=False)  # the run's directory: gateway data, device files, camera frames

    def traces_of(self, what: str) -> list[dict]:
        return [t for t in self.traces if t.get("what") == what]


def play_keeping_traces(path: Path, workdir: Path, time_scale: int | None = None, flash_out: Path | None = None,
                        timeline: Timeline | None = None) -> tuple[dict, list[dict]]:
    """Play the scenario at `path`; its figures and the device's traces (each with its host arrival time `rx`).

    The runner does not return the traces, so they are read where it collects the figures."""
    traces: list[dict] = []
    original = scenario._figures

    def figures(stack, device_id, observer):
        traces.extend(stack.devices[device_id].traces)
        return original(stack, device_id, observer)

    scenario._figures = figures
    try:
        return scenario.run(path, workdir, flash_out=flash_out, timeline=timeline, time_scale=time_scale), traces
    finally:
        scenario._figures = original


class Scenarios:
    """The session's scenario runs, keyed by (name, time scale)."""

    def __init__(self, base: Path):
        self.base = base
        self._played: dict[tuple[str, int | None], Played | BaseException] = {}
        self._lock = threading.Lock()

    def play(self, name: str, time_scale: int | None = None) -> Played:
        """The run of scenario `name` (at `time_scale`, else its own), played now if it is the first ask.

        A run that raised raises the same error for every test that asks, without playing again."""
        key = (name, time_scale)
        with self._lock:
            if key not in self._played:
                where = self.base / (name if time_scale is None else f"{name}-x{time_scale}")
                timeline = Timeline()
                try:
                    result, traces = play_keeping_traces(scenario.find(name), where / "run", time_scale,
                                                         flash_out=where / "flash.img", timeline=timeline)
                    self._played[key] = Played(name, time_scale, result, traces, timeline, where / "flash.img",
                                               where / "run")
                except Exception as exc:  # noqa: BLE001 - raised again, here and for every later ask
                    self._played[key] = exc
            played = self._played[key]
        if isinstance(played, BaseException):
            raise played
        return played
