"""Every named scenario, played on real MicroPython, a real Mosquitto and the gateway process."""

import pytest

from simulator.scenario import find, list_scenarios, run

NAMES = ["burglary", "disarm-no-alarm", "smoke", "duress", "disarm-then-sabotage", "sos", "silent-alarm", "flash-full",
         "sabotage-after-4-min"]


def test_the_named_scenarios_are_listed():
    listed = {s["name"] for s in list_scenarios()}
    assert set(NAMES) <= listed


@pytest.mark.parametrize("name", NAMES)
def test_scenario_meets_its_expectations(name, tmp_path):
    result = run(find(name), tmp_path / "run", flash_out=tmp_path / "flash.img")
    assert result["passed"], result["failures"]
    # Whatever the scenario, no photo byte crossed the broker before an alarm, and every
    # photo at the ARC is there exactly once.
    assert result["image_bytes_sent_without_alarm"] == 0
    assert result["duplicates_stored"] == 0


def test_disarm_without_alarm_sends_nothing_and_leaves_no_recoverable_frame(tmp_path):
    flash = tmp_path / "flash.img"
    result = run(find("disarm-no-alarm"), tmp_path / "run", flash_out=flash)
    assert result["images_captured"] == 3
    assert result["capture_bytes_at_broker"] == 0, "a photo byte crossed the broker without an alarm"
    assert result["device_captures_left"] == 0
    raw = flash.read_bytes()
    assert b"\xff\xd8\xff" not in raw, "JPEG start-of-image marker on the raw flash"
    frames = sorted((tmp_path / "run" / "devices" / "panel-1" / "camera").glob("*.jpg"))
    assert len(frames) == 3
    for frame in frames:
        jpeg = frame.read_bytes()
        for off in range(0, len(jpeg) - 32, 512):
            assert jpeg[off:off + 32] not in raw, f"plaintext of {frame.name} at offset {off} is on the flash"
