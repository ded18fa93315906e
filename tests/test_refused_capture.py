"""A capture the ARC refuses for good is shredded on the device, not resent forever."""

from simulator.flash import vault_listing
from simulator.stack import Stack


def test_a_capture_sealed_to_the_wrong_arc_key_is_refused_and_shredded(tmp_path):
    with Stack(tmp_path / "run") as stack:
        # Mis-provisioned: the device names another ARC key in its sealed headers.
        dev = stack.add_device("panel-1", extra_config={"arc_key_id": "00" * 8})
        dev.boot()
        dev.wait_trace("online")
        stack.panels["panel-1"].smoke()
        dev.wait_trace("refused_by_arc", timeout=30)
        dev.stop()
        assert vault_listing(dev.flash_path)["captures"] == []
        assert stack.images_at_arc("panel-1") == []
        with stack.store() as s:
            assert s.rejections.counts().get("wrong_arc_key") == 1
        assert dev.trace_count("receipt") == 0
