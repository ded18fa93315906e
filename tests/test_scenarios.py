"""Every scenario in simulator/scenarios/, played on real MicroPython, a real Mosquitto and the gateway process.

A file dropped into the folder is played here without touching this module, unless a test
file of its own plays it (PLAYED_ELSEWHERE). Every run goes through the `scenarios` fixture
(tests/support/scenarios.py), which plays a scenario once per session however many tests of
its file check it; and as each scenario has one home file, `pytest -n 2 --dist loadfile`
(one file, one worker) plays it once in the whole suite.
Also: malformed scenario files are refused before anything starts, with exit code 2 and a
message that names the file, the step and the key.
"""

import json
import os

import pytest

from simulator.scenario import SCENARIO_DIR, ScenarioError, find, list_scenarios, load, run

from support.cli import vericam
from support.plaintext import assert_no_plaintext

# Scenarios whose home is another test file: it plays them, checks their [expect], and more.
PLAYED_ELSEWHERE = {
    "walk-test": "tests/test_walk_test.py",
    "hold-window-ends": "tests/test_scaled_time.py",
    "disarm-then-sabotage": "tests/test_scaled_time.py",
    "outage-during-alarm": "tests/test_faults.py",
    "broker-restart-mid-upload": "tests/test_faults.py",
    "power-cut-mid-upload": "tests/test_faults.py",
    "gateway-down": "tests/test_faults.py",
    # The power_loss trigger's two stories; the default one sends with the device's own alarm,
    # which the runner's panel-alarm count cannot see, so its test checks the wire log instead.
    "disarm-reboot-loop": "tests/test_triggers.py",
    "disarm-reboot-power-loss-off": "tests/test_triggers.py",
}
ALL = [p.stem for p in sorted(SCENARIO_DIR.glob("*.toml"))]
PLAYED_HERE = [name for name in ALL if name not in PLAYED_ELSEWHERE]


def test_every_scenario_file_loads_and_is_listed_under_its_file_name():
    listed = list_scenarios()
    assert [item["name"] for item in listed] == ALL, "a scenario's name must be its file name"
    for item in listed:
        assert "error" not in item, item["error"]
        assert item["description"], f"{item['name']}: no description"
        assert set(item) >= {"name", "description", "path", "time_scale", "steps"}
    for name, where in PLAYED_ELSEWHERE.items():
        path = SCENARIO_DIR.parent.parent / where
        assert name in ALL and path.exists() and f'"{name}"' in path.read_text(), name


@pytest.mark.parametrize("name", PLAYED_HERE)
def test_scenario_meets_its_expectations(name, scenarios):
    result = scenarios.play(name).result
    assert result["passed"], result["failures"]
    # Whatever the scenario, no photo byte crossed the broker before an alarm, and every
    # photo at the ARC is there exactly once.
    assert result["image_bytes_sent_without_alarm"] == 0
    assert result["duplicates_stored"] == 0


def test_disarm_without_alarm_sends_nothing_and_leaves_no_recoverable_frame(scenarios):
    played = scenarios.play("disarm-no-alarm")
    result = played.result
    assert result["images_captured"] == 3
    # What crossed the broker on the capture topic is one cover (issue 13: a duress disarm's
    # photos would have left here), which the ARC opened as cover and stored nothing of; no
    # photo byte crossed it (tests/test_duress_cover.py opens that cover from the wire).
    assert result["image_bytes_sent_without_alarm"] == 0, "a photo byte crossed the broker without an alarm"
    assert result["capture_bytes_at_broker"] == result["cover_bytes_at_broker"] > 0
    assert (result["covers_at_arc"], result["captures_at_arc"], result["images_at_arc"]) == (1, 0, 0)
    assert result["device_captures_left"] == 0
    # Its header is still in littlefs's free blocks and the ARC key unwraps its data key, but
    # its key slot was erased: nobody opens it, whatever they hold (issue 13).
    assert result["sealed_headers_on_flash"] == result["data_keys_unwrapped_with_arc_key"]
    assert result["capture_keys_recoverable_with_arc_key"] == result["captures_recoverable_with_arc_key"] == 0
    raw = played.flash.read_bytes()
    frames = sorted((played.workdir / "devices" / "panel-1" / "camera").glob("*.jpg"))
    assert len(frames) == 3
    for frame in frames:
        # Every 64-byte window of the frame, the JPEG header included, at any offset of the flash.
        assert_no_plaintext(raw, frame.read_bytes(), f"plaintext of {frame.name} on the flash")


# -- malformed files --------------------------------------------------------------------------

GOOD_STEPS = '[[step]]\ndo = "arm"\npin = "2580"\n[[step]]\nwait = 1.2\n'

# (what is wrong, the file's text, words the message must contain)
MALFORMED = [
    ("unknown step", 'name = "x"\n' + GOOD_STEPS + '[[step]]\ndo = "opne"\nzone = "door-1"\n',
     ["step 3", "unknown step 'opne'", "did you mean 'open'"]),
    ("misspelled step key", 'name = "x"\n' + GOOD_STEPS + '[[step]]\ndo = "open"\nzon = "door-1"\n',
     ["step 3 (open)", "unknown key 'zon'", "did you mean 'zone'"]),
    ("missing step key", 'name = "x"\n[[step]]\ndo = "open"\n', ["step 1 (open)", "'zone' is missing"]),
    ("unknown zone", 'name = "x"\n[[step]]\ndo = "open"\nzone = "door-2"\n',
     ["step 1 (open)", "no zone 'door-2'", "door-1"]),
    # Found by `vericam bench fuzz`: a list where a zone name goes raised TypeError.
    ("zone as a list", 'name = "x"\n[[step]]\ndo = "open"\nzone = ["door-1"]\n',
     ["step 1 (open)", "no zone ['door-1']"]),
    ("bad type", 'name = "x"\n[[step]]\ndo = "wait_for"\nwhat = "receipt"\ncount = "two"\n',
     ["step 1 (wait_for)", "'count' must be a whole number", "'two'"]),
    ("PIN as a number", 'name = "x"\n[[step]]\ndo = "arm"\npin = 2580\n', ["step 1 (arm)", "'pin'", '"2580"']),
    ("arm mode", 'name = "x"\n[[step]]\ndo = "arm"\npin = "2580"\nmode = "stay"\n',
     ["step 1 (arm)", "'mode'", "'stay'"]),
    ("what the device never reports", 'name = "x"\n[[step]]\ndo = "wait_for"\nwhat = "reciept"\n',
     ["step 1 (wait_for)", "'reciept'", "did you mean 'receipt'"]),
    ("do and wait in one step", 'name = "x"\n[[step]]\ndo = "smoke"\nwait = 2\n', ["step 1 (smoke)", "not both"]),
    ("unknown expectation", 'name = "x"\n[expect]\nimages_at_ark = 3\n',
     ["[expect]", "'images_at_ark'", "did you mean 'images_at_arc'"]),
    ("expectation of the wrong type", 'name = "x"\n[expect]\nalarms = "intrusion"\n',
     ["[expect]", "'alarms' must be a list"]),
    ("unknown device key", 'name = "x"\n[device]\nentry_delay = 45\n',
     ["[device]", "'entry_delay'", "did you mean 'entry_delay_s'"]),
    ("unknown trigger", 'name = "x"\n[device]\ntriggers = { intrusoin = { enabled = true } }\n',
     ["[device]", "'intrusoin'", "did you mean 'intrusion'"]),
    ("trigger out of range", 'name = "x"\n[device]\ntriggers = { smoke = { frames = 20 } }\n',
     ["[device]", "frames must be 1..10"]),
    ("unknown top-level key", 'name = "x"\ntime-scale = 60\n', ["unknown top-level key 'time-scale'",
                                                              "did you mean 'time_scale'"]),
    ("bad duration", 'name = "x"\n[[step]]\ndo = "cut_link"\nfor_s = "4 mins"\n', ["step 1 (cut_link)", "'for_s'"]),
]


@pytest.mark.parametrize("what,text,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_scenario_is_refused_naming_file_step_and_key(what, text, words, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load(path)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message, f"{what}: {word!r} not in {message!r}"


def test_sim_run_exits_2_with_the_message_and_no_traceback(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('name = "typo"\n[device]\nentry_delay = 45\n' + GOOD_STEPS)
    proc = vericam("sim", "run", path, env={**os.environ, "COLUMNS": "200"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert f"{path}: [device]: unknown key 'entry_delay'; did you mean 'entry_delay_s'?" in out


def test_sim_list_json_gives_name_description_path_and_scale():
    proc = vericam("sim", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    items = {item["name"]: item for item in json.loads(proc.stdout)}
    assert set(items) == set(ALL)
    assert items["hold-window-ends"]["time_scale"] == 60 and items["burglary"]["time_scale"] == 1
    assert items["burglary"]["path"].endswith("simulator/scenarios/burglary.toml")


def test_the_runner_knows_every_trace_the_firmware_reports():
    import re

    from simulator.scenario import DEVICE_TRACES

    firmware = SCENARIO_DIR.parent.parent / "firmware" / "vericam"
    traced = set()
    for source in firmware.glob("*.py"):
        traced |= set(re.findall(r'trace\(\s*"([a-z_]+)"', source.read_text()))
    assert traced == DEVICE_TRACES, "update DEVICE_TRACES in simulator/scenario.py"


def test_a_wait_for_that_times_out_fails_its_step_and_ends_the_steps(tmp_path):
    path = tmp_path / "never.toml"
    path.write_text('name = "never"\n[[step]]\ndo = "wait_for"\nwhat = "receipt"\ntimeout = 1\n'
                    '[[step]]\ndo = "smoke"\n[expect]\nalarms = []\n')
    result = run(path, tmp_path / "run")
    assert not result["passed"]
    assert result["failures"] == ["step 1 (wait_for): waited 1 real seconds for 1 x 'receipt'; the device reported 0"]
    assert result["alarms"] == [], "the step after the failed wait_for was played"


def test_asking_the_panel_for_the_impossible_is_a_scenario_error(tmp_path):
    path = tmp_path / "twice.toml"
    path.write_text('name = "twice"\n' + GOOD_STEPS.replace("wait = 1.2", "wait = 0.1") + '[[step]]\ndo = "arm"\npin = "1234"\n')
    with pytest.raises(ScenarioError, match=r"twice.toml: step 3 \(arm\): the panel refused: cannot arm while exit_delay"):
        run(path, tmp_path / "run")


def test_an_alarm_published_into_a_link_cut_longer_than_5_minutes_is_logged_at_the_arc(tmp_path):
    text = find("smoke-during-link-cut").read_text()
    assert 'wait = "100 s"' in text
    path = tmp_path / "long-cut.toml"
    path.write_text(text.replace('wait = "100 s"', 'wait = "9 min"').replace(
        'technical = ["supervision_lost", "supervision_restored"]\n', ""))
    result = run(path, tmp_path / "run")
    assert result["images_at_arc_by_trigger"] == {"smoke": 2}, "the photos themselves must arrive"
    assert result["alarms"] == ["smoke"], result["failures"]
    assert result["alarms_by_code"] == {"smoke": 1}, "one alarm, however often its event was sealed"
