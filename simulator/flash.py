"""Reading a device's raw flash image from the host, independently of the firmware (littlefs-python)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from littlefs import LittleFS

BLOCK_SIZE = 4096


@contextmanager
def mounted(path: str | Path):
    """The littlefs in a flash image, mounted read-only in memory; unmounted on exit.

    Files opened from it must be closed inside the block: littlefs-python crashes when a
    mounted file system with open files is garbage-collected.
    """
    data = Path(path).read_bytes()
    fs = LittleFS(block_size=BLOCK_SIZE, block_count=len(data) // BLOCK_SIZE, mount=False)
    fs.context.buffer[: len(data)] = data
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()


def read_file(path: str | Path, name: str) -> bytes:
    with mounted(path) as fs:
        with fs.open(name, "rb") as f:
            return f.read()


def vault_listing(path: str | Path) -> dict[str, list[str]]:
    """The vault's files by kind: whole sealed captures, state records and debris."""
    with mounted(path) as fs:
        try:
            names = fs.listdir("/vault")
        except Exception:
            names = []
    return {
        "captures": sorted(n for n in names if n.endswith(".cap")),
        "states": sorted(n for n in names if n.endswith(".st")),
        "debris": sorted(n for n in names if n.endswith((".tmp", ".sx"))),
    }


def captures_left(path: str | Path) -> int:
    return len(vault_listing(path)["captures"])
