"""Fleet mode: many real devices against one broker and one gateway, living randomised daily lives.

`run_fleet(devices=N, duration_s=S, seed=K)` starts one `Stack` (one Mosquitto, one
gateway process) and N devices, each a real MicroPython process with its own littlefs
flash image and its own provisioned keys. One scheduler thread plays every household's
day from a seeded RNG, episode after episode:

- homecoming: arm by a random user slot, come back through the door, disarm within the
  entry delay (the disarm photos are held on the device and shredded, nothing is sent);
- intrusion: arm, the door opens, nobody disarms: the intrusion alarm sends its photos;
  a user disarms a little later (alarm cancelled);
- smoke: the smoke detector fires (a smoke test): its photos go to the ARC.

The first episode of device i is intrusion, smoke or homecoming in turn (i mod 3), so
even a short run of three devices has alarms of both kinds; the rest are drawn at random.
After the run the fleet waits (bounded) for deliveries to settle and then counts, from
the gateway's store and the simulator's own records, what a fleet operator cares about:
devices the ARC supervises as online, alarms, photos captured, at the ARC, lost and
doubled, and what each device process costs in memory.
"""

from __future__ import annotations

import heapq
import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from simulator.camera import Camera
from simulator.stack import Stack

# Triggers that send to the ARC when they fire (the fleet's configuration enables these).
ALARM_TRIGGERS = ("intrusion", "smoke")

# A light household profile: two frames per series keeps a thousand renders cheap, and a
# short hold window lets the held disarm photos be shredded within the run.
FLEET_TRIGGERS = {
    "disarm": {"enabled": True, "frames": 2, "interval_ms": 300},
    "intrusion": {"enabled": True, "frames": 2, "interval_ms": 300},
    "smoke": {"enabled": True, "frames": 2, "interval_ms": 300},
}
FLEET_PANEL = {"exit_delay_s": 0.5, "entry_delay_s": 1.0}
FLEET_HOLD_WINDOW_MS = 4000
EPISODES = ("intrusion", "smoke", "homecoming")
EPISODE_WEIGHTS = (0.2, 0.15, 0.65)


def _rss_kb(pid: int) -> int | None:
    """Resident set size of a process in KiB, from /proc/<pid>/status (VmRSS)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _pss_kb(pid: int) -> int | None:
    """Proportional set size in KiB (shared pages divided among their sharers), from smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


class Household:
    """One device's daily life: a generator of (delay_s, action) from its own RNG."""

    def __init__(self, index: int, device_id: str, panel, rng: random.Random, gap_s: tuple[float, float]):
        self.index = index
        self.device_id = device_id
        self.panel = panel
        self.rng = rng
        self.gap_s = gap_s
        self.episodes: dict[str, int] = {k: 0 for k in EPISODES}

    def _pin(self) -> str:
        slot = self.rng.choice(sorted(self.panel.users))
        return self.panel.users[slot]

    def life(self, stop_at: float):
        """Episodes until `stop_at` (monotonic); each yields (delay before the next action, action)."""
        first = True
        # stagger the fleet's start over the first gap; a household whose first episode
        # would fall after the end of the run stays quiet
        stagger = self.rng.uniform(0.0, self.gap_s[0])
        if time.monotonic() + stagger >= stop_at:
            return
        yield stagger, None
        while time.monotonic() < stop_at:
            if first:
                kind = EPISODES[self.index % len(EPISODES)]
                first = False
            else:
                kind = self.rng.choices(EPISODES, EPISODE_WEIGHTS)[0]
            self.episodes[kind] += 1
            exit_s = self.panel.exit_delay_s + 0.2
            entry_s = self.panel.entry_delay_s
            pin = self._pin()
            if kind == "homecoming":
                yield 0.0, lambda: self.panel.arm(pin, self.rng.choice(("away", "home")))
                yield exit_s + self.rng.uniform(0.5, 2.0), lambda: self.panel.open_zone("door-1")
                yield self.rng.uniform(0.1, entry_s * 0.6), lambda: self.panel.disarm(self._pin())
            elif kind == "intrusion":
                yield 0.0, lambda: self.panel.arm(pin, "away")
                yield exit_s + self.rng.uniform(0.5, 2.0), lambda: self.panel.open_zone("door-1")
                # nobody disarms within the entry delay: the panel raises the intrusion alarm
                yield entry_s + self.rng.uniform(1.0, 3.0), lambda: self.panel.disarm(self._pin())
            else:  # smoke test
                yield 0.0, self.panel.smoke
                yield self.rng.uniform(1.0, 3.0), lambda: self.panel.disarm(self._pin())
            # idle until the next episode, but never past the end of the run
            yield min(self.rng.uniform(*self.gap_s), max(0.0, stop_at - time.monotonic())), None


def run_fleet(devices: int = 10, duration_s: float = 30.0, seed: int = 1, workdir: Path | None = None,
              frame_size: tuple[int, int] = (320, 240), gap_s: tuple[float, float] = (2.0, 8.0),
              settle_timeout_s: float = 60.0, boot_workers: int = 4,
              progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Play a fleet's daily life and return its figures (see the module docstring).

    `progress(what, done, total)` is called with what in "booted", "events", "photos_at_arc".
    """
    if devices < 1:
        raise ValueError("a fleet needs at least one device")
    report = progress or (lambda *_: None)
    rng = random.Random(seed)
    started_ms = int(time.time() * 1000)
    stack = Stack(workdir)
    errors: list[str] = []
    rss_peak: dict[str, int] = {}
    try:
        t0 = time.monotonic()
        stack.start()
        ids = [f"fleet-{i:04d}" for i in range(devices)]
        for i, dev_id in enumerate(ids):
            dev = stack.add_device(dev_id, site=f"home-{i:04d}", triggers=FLEET_TRIGGERS,
                                   hold_window_ms=FLEET_HOLD_WINDOW_MS, flash_blocks=256,
                                   panel_kwargs=FLEET_PANEL)
            dev.camera = Camera(dev_id, size=frame_size, seed=i)

        booted = [0]
        lock = threading.Lock()

        def boot(dev_id: str) -> None:
            dev = stack.devices[dev_id]
            dev.boot(timeout=60)
            dev.wait_trace("online", timeout=60)
            with lock:
                booted[0] += 1
                report("booted", booted[0], devices)

        pool = ThreadPoolExecutor(max_workers=boot_workers)
        try:
            for fut in [pool.submit(boot, d) for d in ids]:
                fut.result()
        finally:
            # On a failed boot or an interrupt, do not boot the rest before giving up.
            pool.shutdown(wait=True, cancel_futures=True)
        boot_s = time.monotonic() - t0

        # -- daily life: one scheduler thread for the whole fleet -----------------------------
        load_before = _cpu_times()
        device_cpu_before = sum(_proc_cpu_s(dev.proc.pid) for dev in stack.devices.values() if dev.proc)
        t_life = time.monotonic()
        stop_at = t_life + duration_s
        households = [Household(i, d, stack.panels[d], random.Random(rng.getrandbits(64)), gap_s)
                      for i, d in enumerate(ids)]
        lives = [h.life(stop_at) for h in households]
        queue: list[tuple[float, int]] = [(t_life, i) for i in range(devices)]
        heapq.heapify(queue)
        actions_played = 0
        next_rss = 0.0
        pending: dict[int, Callable | None] = {}
        lateness_ms: list[float] = []  # how late the scheduler played each panel action
        while queue:
            at, i = heapq.heappop(queue)
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action = pending.pop(i, None)
            if action is not None:
                lateness_ms.append((time.monotonic() - at) * 1000)
                try:
                    action()
                    actions_played += 1
                except Exception as exc:  # a panel refusal or a device gone: counted, never fatal
                    errors.append(f"{ids[i]}: {exc}")
            try:
                wait, action = next(lives[i])
            except StopIteration:
                continue
            pending[i] = action
            heapq.heappush(queue, (time.monotonic() + wait, i))
            now = time.monotonic()
            if now >= next_rss:
                _sample_rss(stack, rss_peak)
                report("events", actions_played, 0)
                report("photos_at_arc", _count_images(stack), _count_alarm_frames(stack))
                next_rss = now + 1.0
        life_s = time.monotonic() - t_life
        report("events", actions_played, actions_played)

        # -- settle: wait (bounded) until every alarm photo captured is at the ARC ------------
        t_settle = time.monotonic()
        while True:
            _sample_rss(stack, rss_peak)
            per_dev = _alarm_frames_by_device(stack)
            at_arc = _images_by_device(stack)
            missing = sum(max(0, per_dev[d][t] - at_arc.get(d, {}).get(t, 0)) for d in per_dev for t in per_dev[d])
            report("photos_at_arc", sum(sum(v.values()) for v in at_arc.values()),
                   sum(sum(v.values()) for v in per_dev.values()))
            if missing == 0 or time.monotonic() - t_settle > settle_timeout_s:
                break
            time.sleep(0.5)
        settle_s = time.monotonic() - t_settle
        load_after = _cpu_times()
        device_cpu_s = sum(_proc_cpu_s(dev.proc.pid) for dev in stack.devices.values() if dev.proc) - device_cpu_before
        life_and_settle_s = max(0.001, time.monotonic() - t_life)

        # -- figures --------------------------------------------------------------------------
        rss_now = {d: _rss_kb(dev.proc.pid) for d, dev in stack.devices.items() if dev.proc}
        pss_mb = [v / 1024 for v in (_pss_kb(dev.proc.pid) for dev in stack.devices.values() if dev.proc) if v]
        with stack.store() as s:
            rows = s.devices.list()
            images = s.images.list()
            alarms_at_arc = s.alarms.list()
        supervised = [r for r in rows if r["id"] in stack.devices and r.get("online")
                      and (r.get("last_seen_ms") or 0) >= started_ms]
        keys = [(r["device"], r["capture_id"], r["frame_index"]) for r in images]
        per_dev = _alarm_frames_by_device(stack)
        at_arc = _images_by_device(stack)
        lost = sum(max(0, per_dev[d][t] - at_arc.get(d, {}).get(t, 0)) for d in per_dev for t in per_dev[d])
        alarms_raised = sum(len(p.alarms) for p in stack.panels.values())
        episodes = {k: sum(h.episodes[k] for h in households) for k in EPISODES}
        rss_mb = [v / 1024 for v in rss_now.values() if v]
        peak_mb = [v / 1024 for v in rss_peak.values()]
        busy = load_after[0] - load_before[0]
        total = max(1, load_after[1] - load_before[1])
        latencies = _alarm_to_stored_ms(stack, images)
        gw_rss = _rss_kb(stack.gateway_proc.pid) if stack.gateway_proc else None
        broker_pid = getattr(getattr(stack.broker, "proc", None), "pid", None)
        result = {
            "devices": devices,
            "devices_booted": booted[0],
            "devices_supervised_ok": len(supervised),
            "duration_s": duration_s,
            "seed": seed,
            "episode_gap_s": [round(x, 2) for x in gap_s],
            "frame_size": f"{frame_size[0]}x{frame_size[1]}",
            "episodes": episodes,
            "panel_actions": actions_played,
            "alarms": alarms_raised,
            "alarms_at_arc": len(alarms_at_arc),
            # Homecomings whose disarm the simulator played after the entry delay had run
            # out: the panel rightly raised an intrusion alarm. Non-zero means the host
            # could not keep the households' timing (see scheduler_late_ms).
            "alarms_unplanned": max(0, alarms_raised - episodes["intrusion"] - episodes["smoke"]),
            "scheduler_late_ms": _quantiles(lateness_ms),
            "images_captured": sum(len(dev.frames) for dev in stack.devices.values()),
            "images_captured_for_alarms": sum(sum(v.values()) for v in per_dev.values()),
            "images_at_arc": len(images),
            "images_lost": lost,
            "duplicates_stored": len(keys) - len(set(keys)),
            "shredded_on_device": sum(dev.trace_count("shredded") for dev in stack.devices.values()),
            "alarm_to_stored_ms": latencies,
            "rss_mb_per_device": {
                "mean": round(statistics.fmean(rss_mb), 1) if rss_mb else None,
                "max": round(max(rss_mb), 1) if rss_mb else None,
                "peak_max": round(max(peak_mb), 1) if peak_mb else None,
            },
            # RSS counts the interpreter's shared pages in every process; PSS shares them out,
            # so PSS x devices is what the fleet really costs in RAM.
            "pss_mb_per_device_mean": round(statistics.fmean(pss_mb), 1) if pss_mb else None,
            "rss_mb_gateway": round(gw_rss / 1024, 1) if gw_rss else None,
            "rss_mb_broker": round(_rss_kb(broker_pid) / 1024, 1) if broker_pid and _rss_kb(broker_pid) else None,
            "rss_mb_simulator": round((_rss_kb(os.getpid()) or 0) / 1024, 1),
            "host": {
                "cpus": os.cpu_count(),
                "cpu_busy_pct": round(100.0 * busy / total, 1),
                # all device processes together, in % of one core, over the life and settle
                "devices_cpu_pct_of_one_core": round(100.0 * device_cpu_s / life_and_settle_s, 1),
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            },
            "seconds": {"boot": round(boot_s, 1), "life": round(life_s, 1), "settle": round(settle_s, 1)},
            "errors": errors[:20],
            "error_count": len(errors),
        }
        result["passed"] = (result["images_lost"] == 0 and result["duplicates_stored"] == 0
                            and result["devices_supervised_ok"] == devices)
        return result
    finally:
        stack.close()


def _sample_rss(stack: Stack, peak: dict[str, int]) -> None:
    for d, dev in stack.devices.items():
        if dev.proc and dev.proc.poll() is None:
            kb = _rss_kb(dev.proc.pid)
            if kb and kb > peak.get(d, 0):
                peak[d] = kb


def _alarm_frames_by_device(stack: Stack) -> dict[str, dict[str, int]]:
    """Frames each device's camera took for a sending trigger, by trigger (the simulator's own count)."""
    out: dict[str, dict[str, int]] = {}
    for d, dev in stack.devices.items():
        counts: dict[str, int] = {}
        for trigger, _index, _jpeg in list(dev.frames):
            if trigger in ALARM_TRIGGERS:
                counts[trigger] = counts.get(trigger, 0) + 1
        out[d] = counts
    return out


def _images_by_device(stack: Stack) -> dict[str, dict[str, int]]:
    """Distinct images stored at the ARC, by device and trigger."""
    out: dict[str, dict[str, int]] = {}
    with stack.store() as s:
        seen = set()
        for r in s.images.list():
            key = (r["device"], r["capture_id"], r["frame_index"])
            if key in seen:
                continue
            seen.add(key)
            per = out.setdefault(r["device"], {})
            per[r["trigger"]] = per.get(r["trigger"], 0) + 1
    return out


def _count_images(stack: Stack) -> int:
    with stack.store() as s:
        return len(s.images.list())


def _count_alarm_frames(stack: Stack) -> int:
    return sum(sum(v.values()) for v in _alarm_frames_by_device(stack).values())


def _alarm_to_stored_ms(stack: Stack, images: list[dict]) -> dict:
    """Per alarm: from the panel raising it to the last of its photos stored at the ARC (p50, p95, max)."""
    last_stored: dict[tuple[str, str], int] = {}
    for r in images:
        if r["trigger"] in ALARM_TRIGGERS and r.get("alarm_id"):
            k = (r["device"], r["alarm_id"])
            last_stored[k] = max(last_stored.get(k, 0), r["stored_at_ms"] or 0)
    samples = []
    for d, sent in stack.alarm_sent_ms.items():
        stored = sorted(v for (dev, _a), v in last_stored.items() if dev == d)
        # pair each alarm with the first store after it
        for t in sorted(sent):
            after = [s for s in stored if s >= t]
            if after:
                samples.append(after[0] - t)
                stored.remove(after[0])
    return _quantiles(samples)


def _quantiles(samples: list[float]) -> dict:
    if not samples:
        return {"count": 0}
    samples = sorted(samples)

    def q(p: float) -> float:
        return round(samples[min(len(samples) - 1, int(p * len(samples)))], 1)

    return {"count": len(samples), "p50": q(0.5), "p95": q(0.95), "max": round(samples[-1], 1)}
