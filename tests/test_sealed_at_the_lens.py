"""A capture sitting on the device's flash is sealed: a raw dump shows no frame, and the device cannot open it."""

import hashlib

from simulator.flash import read_file, vault_listing
from simulator.stack import Stack


def test_a_held_disarm_capture_on_flash_reveals_nothing(tmp_path):
    with Stack(tmp_path / "run") as stack:
        dev = stack.add_device("panel-1", hold_window_ms=600_000)
        dev.boot()
        dev.wait_trace("online")
        panel = stack.panels["panel-1"]
        panel.disarm("1234")
        dev.wait_trace("held", timeout=20)
        dev.kill()  # a thief pulls the device off the wall while the photos are held
        listing = vault_listing(dev.flash_path)
        assert len(listing["captures"]) == 1, listing
        raw = dev.flash_path.read_bytes()
        sealed = read_file(dev.flash_path, "/vault/" + listing["captures"][0])
        config = read_file(dev.flash_path, "/config.json").decode()
    assert sealed[:4] == b"VCAP"
    assert b"\xff\xd8\xff" not in raw
    for _trigger, _i, jpeg in dev.frames:
        for off in range(0, len(jpeg) - 32, 512):
            assert jpeg[off:off + 32] not in raw
    # What the device holds cannot open the capture: the data key is wrapped to the ARC's
    # public key, and the device's config has no private key.
    assert "arc_n" in config and "PRIVATE" not in config and '"arc_d"' not in config
    assert not stack.images_at_arc("panel-1")
    assert hashlib.sha256(sealed).digest()  # the sealed file itself is whole
