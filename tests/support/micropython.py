"""A MicroPython script from tests/firmware/ run in the background, its output read line by line."""

import queue
import subprocess
import threading
import time
from pathlib import Path

import pytest

from simulator.mpy import micropython_argv, micropython_env

SCRIPTS = Path(__file__).resolve().parents[1] / "firmware"


class MicroPythonScript:
    """`tests/firmware/<script> ARGS...` on the MicroPython unix port, stdout and stderr merged."""

    def __init__(self, script, *args, heapsize=None):
        self.proc = subprocess.Popen(micropython_argv(SCRIPTS / script, heapsize) + list(args),
                                     env=micropython_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix, timeout=10.0):
        """The next output line starting with `prefix`; fails with the output so far."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"device did not print {prefix!r} within {timeout} s:\n" + "\n".join(self.seen[-40:]))
            if line is None:
                pytest.fail(f"device exited before printing {prefix!r}:\n" + "\n".join(self.seen[-40:]))
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def wait(self, timeout=10.0):
        return self.proc.wait(timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
