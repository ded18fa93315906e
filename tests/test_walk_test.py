"""The installer's walk test: every zone and every trigger of the site's configuration, played on real MicroPython."""

from simulator.scenario import find, load


def test_walk_test_every_zone_and_trigger_produces_what_the_config_says(scenarios):
    spec = load(find("walk-test"))
    triggers = spec["device"]["triggers"]
    result = scenarios.play("walk-test").result
    assert result["passed"], result["failures"]

    # Every sending trigger's photos are at the ARC, each exactly once; a held trigger
    # (disarm, and panic as this site configures it) sent nothing and left nothing.
    at_arc = result["images_at_arc_by_trigger"]
    for name, cfg in triggers.items():
        sends = cfg.get("sends", name != "disarm")
        if sends:
            assert at_arc.get(name, 0) > 0, f"{name}: no photo at the ARC"
        else:
            assert name not in at_arc, f"{name} is configured to hold its photos, but {at_arc[name]} reached the ARC"
    assert result["duplicates_stored"] == 0
    assert result["image_bytes_sent_without_alarm"] == 0
    assert result["device_captures_left"] == 0
    # Every zone opened while armed raised its own intrusion alarm at the ARC.
    assert result["alarms_by_code"]["intrusion"] == 3
