"""`vericam gateway console` serves the console on stored data without a broker."""

import subprocess
import time
import urllib.error
import urllib.request

from gateway.provisioning.devices import init_arc
from simulator.broker import free_port

from support.cli import VERICAM, vericam


def test_console_alone_serves_the_login_page_and_refuses_photos_without_a_session(tmp_path):
    data = tmp_path / "gw"
    init_arc(data)
    port = free_port()
    assert vericam("gateway", "console", "--data", tmp_path / "nothing").returncode == 2
    proc = subprocess.Popen([VERICAM, "gateway", "console", "--data", str(data), "--port", str(port),
                             "--http-cookies"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as r:
                    assert r.status == 200 and "Log in" in r.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/alarms", timeout=2)
            raise AssertionError("the API answered without a session")
        except urllib.error.HTTPError as exc:
            assert exc.code in (401, 403)
    finally:
        proc.terminate()
        proc.wait(20)
