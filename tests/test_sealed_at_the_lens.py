"""A capture sitting on the device's flash is sealed: a raw dump shows no frame, and the device cannot open it."""

import pytest

from gateway.protocol.capture import BadCapture, open_sealed
from simulator.flash import read_file, slot_keys, vault_listing
from simulator.stack import Stack

from support.plaintext import assert_no_plaintext


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
        with stack.store() as store:
            arc_key, arc_key_id = store.keys.arc_private_key(), store.keys.arc_key_id()
    assert sealed[:4] == b"VCAP"
    assert dev.frames, "the camera rendered no photo, so this test would prove nothing"
    for _trigger, i, jpeg in dev.frames:
        # Every 64-byte window of the frame, its JPEG header included, at any offset of the raw dump.
        assert_no_plaintext(raw, jpeg, f"frame {i} on the flash")
    # What the device holds cannot open the capture: the data key is wrapped to the ARC's
    # public key, and the device's config has no private key.
    assert "arc_n" in config and "PRIVATE" not in config and '"arc_d"' not in config
    assert not stack.images_at_arc("panel-1")
    # The ARC's private key alone does not open it either: its keys come from the data key
    # and the slot key, which sits in the key-slot area, outside littlefs (PROTOCOL §4.1).
    with pytest.raises(BadCapture, match="header MAC"):
        open_sealed(sealed, arc_key, bytes(32), expected_key_id=arc_key_id)
    # The sealed file itself is whole: the ARC's private key and the capture's slot key, read
    # from the raw key-slot area, open it (every frame's MAC checks) and find the very photos
    # the camera took. That is what an alarm's release record gives the ARC.
    keys = [sk for cid, sk in slot_keys(raw) if cid == sealed[8:24]]
    assert len(keys) == 1, "the held capture has not exactly one key slot"
    opened, _end = open_sealed(sealed, arc_key, keys[0], expected_key_id=arc_key_id)
    assert [f.jpeg for f in opened.frames] == [jpeg for _trigger, _i, jpeg in dev.frames]
