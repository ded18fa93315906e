"""Stopping the child processes of a run (broker, gateway workers): politely, then for good."""

from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen, grace_s: float, sig: int = signal.SIGTERM) -> None:
    """Send `sig` and wait up to `grace_s` for the process to end, then SIGKILL it.

    Returns once the process is gone and reaped; a process that has already ended is left alone."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
