"""What an ARC integrator types for DC-09: accounts per device, the run options, the demo, and the benchmark.

Through the installed `vericam` command, as an integrator runs it: a device is given its
panel's account when it is provisioned or later; `gateway run`, `demo` and `sim run` take the
receivers and the key file, and refuse ones that cannot work, saying how to fix them; the demo
reports its burglary to a real receiver (pysiaalarm) plugged in from outside; and
`vericam bench dc09 --json` prints the figures the issue asks for.
"""

from __future__ import annotations

import json

import pytest

from simulator.bench.dc09 import ArcReceiver, write_key_file
from support.cli import vericam, vericam_ok

pytestmark = pytest.mark.timeout(240)

KEY = "0123456789ABCDEF0123456789ABCDEF"


def test_a_device_gets_its_panels_account_when_provisioned_or_later(tmp_path):
    data = tmp_path / "gw"
    out = vericam_ok("gateway", "add-device", "cam-1", "--site", "s", "--data", data, "--out", tmp_path / "cam-1.json",
                     "--dc09-account", "12ab", "--dc09-zone", "7", "--dc09-receiver", "3")
    assert "reported over DC-09 as account 12AB (L0 R3), area 1, zone 7" in out
    vericam_ok("gateway", "add-device", "cam-2", "--site", "s", "--data", data, "--out", tmp_path / "cam-2.json")
    vericam_ok("gateway", "dc09-account", "cam-2", "--data", data, "--account", "5678", "--area", "2")
    listed = json.loads(vericam("gateway", "dc09-account", "--data", data, "--json").stdout)
    assert [(r["device"], r["account"], r["receiver"], r["area"], r["zone"]) for r in listed] == \
        [("cam-1", "12AB", "3", 1, 7), ("cam-2", "5678", None, 2, 1)]
    assert "no longer reported" in vericam_ok("gateway", "dc09-account", "cam-2", "--data", data, "--remove")

    bad = vericam("gateway", "dc09-account", "cam-1", "--data", data, "--account", "12G4")
    assert bad.returncode == 2 and "not 3 to 16 hex digits" in bad.stderr
    refused = vericam("gateway", "add-device", "cam-3", "--site", "s", "--data", data, "--dc09-account", "1234",
                      "--dc09-zone", "1000", "--out", tmp_path / "cam-3.json")
    assert refused.returncode == 2 and "zone 1000 0-999" in refused.stderr
    assert not (tmp_path / "cam-3.json").exists()                  # refused before anything was written


def test_run_refuses_receivers_and_key_files_that_cannot_work(tmp_path):
    data = tmp_path / "gw"
    vericam_ok("gateway", "init", "--data", data)
    loose = tmp_path / "dc09.keys"
    loose.write_text(f"ascii:{KEY}\n")
    loose.chmod(0o644)
    for args, message in ((["--dc09", "arc.example"], "is not HOST:PORT"),
                          (["--dc09", "127.0.0.1:9", "--dc09-key-file", loose], "chmod 600"),
                          (["--dc09-key-file", loose], "need --dc09 HOST:PORT"),
                          (["--dc09", "127.0.0.1:9", "--dc09-format", "XML"], "is not one of SIA-DCS, ADM-CID")):
        proc = vericam("gateway", "run", "--data", data, *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert KEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [["gateway", "run"], ["demo"], ["sim", "run"]])
def test_every_way_to_run_a_gateway_takes_a_receiver_from_outside(command):
    text = vericam_ok(*command, "--help")
    for option in ("--dc09", "--dc09-key-file", "--dc09-format"):
        assert option in text


def test_the_demo_reports_its_burglary_to_a_receiver_plugged_in_from_outside(tmp_path):
    keys = write_key_file(tmp_path / "dc09.keys", {"*": KEY})
    with ArcReceiver({"4321": KEY}) as arc:
        proc = vericam("demo", "--json", "--workdir", tmp_path / "demo", "--dc09", arc.where, "--dc09-key-file", keys,
                       "--dc09-account", "4321", timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = arc.of("4321")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    reports = result["dc09"]
    assert [(r["event"], r["follow_up"], r["acked_by"]) for r in reports] == \
        [("intrusion", False, "primary"), ("intrusion", True, "primary")]
    assert [e.sequence for e in got] == [f"{r['seq']:04d}" for r in reports]
    assert all(e.code == "BA" and e.x_data.startswith("Vhttp://127.0.0.1:8080/alarms/panel-1/") for e in got)


def test_bench_dc09_prints_the_figures_the_issue_asks_for(tmp_path):
    proc = vericam("bench", "dc09", "--alarms", "2", "--json", "--workdir", tmp_path / "bench", timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["alarms"], result["acked"], result["lost"], result["duplicates_at_receiver"]) == (2, 2, 0, 0)
    assert set(result["alarm_to_ack_ms"]) >= {"p50", "p95"} and result["alarm_to_ack_ms"]["p95"] > 0
    assert result["baseline_ms"] > 0 and result["alarm_to_event_stored_ms"]["p50"] > 0
    # The device's MQTT hop ends when the broker delivers the alarm's message, for each alarm.
    assert result["mqtt_hop_ms"]["n"] == result["gateway_to_ack_ms"]["n"] == 2
    assert result["mqtt_hop_ms"]["p50"] > 0 and result["gateway_to_ack_ms"]["p50"] > 0
    assert result["acked_before_photos_stored"] == 2          # the alarm never waited for its photos


def test_a_scenario_reports_its_alarm_to_a_receiver_plugged_in_from_outside(tmp_path):
    keys = write_key_file(tmp_path / "dc09.keys", {"*": KEY})
    with ArcReceiver({"1234": KEY}) as arc:
        proc = vericam("sim", "run", "burglary", "--json", "--dc09", arc.where, "--dc09-key-file", keys, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = arc.of("1234")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["passed"]
    assert [(r["event"], r["follow_up"], r["acked_by"]) for r in result["dc09"]] == \
        [("intrusion", False, "primary"), ("intrusion", True, "primary")]
    assert [(e.code, e.sequence) for e in got] == [("BA", f"{r['seq']:04d}") for r in result["dc09"]]
