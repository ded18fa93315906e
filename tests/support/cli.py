"""The one way the tests run the `vericam` command: the installed entry point, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The console script `pip install` put next to this interpreter: the command an operator runs.
VERICAM = str(Path(sys.executable).parent / "vericam")


def vericam(*args, env: dict | None = None, timeout: float = 60, input: str | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run `vericam ARGS...` (each arg str()-ed); the finished process with text stdout/stderr.

    `env` replaces the environment (default: this one). COLUMNS is set wide unless `env`
    sets it, so that error messages are not wrapped mid-sentence."""
    env = dict(os.environ if env is None else env)
    env.setdefault("COLUMNS", "200")
    return subprocess.run([VERICAM, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, input=input, cwd=cwd)


def vericam_ok(*args, **kwargs) -> str:
    """`vericam(...)` that must succeed; its stdout and stderr, for the caller to search."""
    proc = vericam(*args, **kwargs)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"vericam {' '.join(map(str, args))} exited {proc.returncode}:\n{out}"
    return out
