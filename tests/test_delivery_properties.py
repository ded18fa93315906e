"""Properties of the device's delivery lifecycle under random histories (hypothesis), on CPython and MicroPython.

The promise: a capture leaves the device's flash only on the ARC's receipt for exactly the
bytes it sent, or at the end of its hold window when no alarm claimed it; every capture
ends one way or the other; a resend is stored once at an ARC that deduplicates by capture
id; and a reboot at any step keeps all of it. A reboot never extends a hold window: what
was held when the power went is sent with a `power_loss` alarm or shredded in that boot,
as the device's configuration of the trigger says, so no capture is held across two boots. tests/firmware/delivery_model.py plays the
flash, the link and the ARC around firmware/vericam/delivery.py and checks the promises at
every step; the same file replays the same histories on the real MicroPython unix port.
"""

import json
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.mpy import run_micropython

ROOT = Path(__file__).resolve().parent.parent
REPLAY = ROOT / "tests" / "firmware" / "delivery_replay.py"
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT / "tests" / "firmware"))

from delivery_model import POWER_LOSS_CONFIGS, RECEIPT_TIMEOUT_MS, World, play  # noqa: E402
from vericam.delivery import (AWAITING, BOOT_RULES, COVER_BOOT_RULE, HELD, PUBLISHING, QUEUED,  # noqa: E402
                              RECORD_CAPTURING, RECORD_HELD, RECORD_SENDING, SEALED, TRANSITIONS, Delivery)
from vericam.envelope import RECEIPT_REJECTED, RECEIPT_RESEND, RECEIPT_STORED  # noqa: E402

index = st.integers(min_value=0, max_value=30)
forged = st.tuples(st.just("forged"), index, st.sampled_from([RECEIPT_STORED, RECEIPT_RESEND, RECEIPT_REJECTED]),
                   st.booleans())
step = st.one_of(
    st.tuples(st.just("seal"), st.booleans(), st.integers(0, 5).map(lambda n: n == 0)),
    st.tuples(st.just("cover"), st.integers(0, 5).map(lambda n: n == 0)),
    st.tuples(st.just("twin"), st.integers(0, 3).map(lambda n: n == 0)),
    st.tuples(st.just("alarm")),
    st.tuples(st.just("hold_end"), index),
    st.tuples(st.just("take")),
    st.tuples(st.just("arc_gets"), st.integers(0, 5)),
    st.tuples(st.just("acked"), st.integers(0, 3).map(lambda n: n != 0)),
    st.tuples(st.just("receipt"), index, st.booleans()),
    st.tuples(st.just("lose"), index),
    forged,
    st.tuples(st.just("arc_resend"), index),
    st.tuples(st.just("tick"), st.integers(0, 40 * RECEIPT_TIMEOUT_MS)),
    st.tuples(st.just("reboot")),
).map(list)
histories = st.lists(step, max_size=60)
power_loss = st.sampled_from(POWER_LOSS_CONFIGS)


def with_reboot(history, at):
    """The history with the power cut before step `at`."""
    at = at % (len(history) + 1)
    return history[:at] + [["reboot"]] + history[at:]


@settings(max_examples=400, deadline=None)
@given(histories, power_loss)
def test_no_capture_leaves_the_flash_without_its_receipt_and_every_capture_ends(history, config):
    summary = play(history, config)
    assert summary["gone"] == summary["sealed"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(step, forged.map(list)), max_size=30))
def test_receipts_for_other_bytes_or_unknown_captures_never_destroy_a_capture(pairs):
    # A receipt for other bytes after every step; the model raises Broken when one of them
    # destroys anything.
    play([s for pair in pairs for s in pair])


@settings(max_examples=200, deadline=None)
@given(histories, st.integers(min_value=0), power_loss)
def test_a_reboot_at_any_step_keeps_the_promises(history, at, config):
    play(with_reboot(history, at), config)


# Held disarm series (some sealed just before a power cut), reboots, and a link that works.
calm_with_reboots = st.lists(st.sampled_from([["seal", False, False], ["seal", False, True], ["reboot"],
                                              ["take"], ["arc_gets", 1], ["acked", True], ["receipt", 0, False],
                                              ["tick", RECEIPT_TIMEOUT_MS]]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(calm_with_reboots, power_loss)
def test_no_reboot_sequence_keeps_a_held_capture_past_one_boot(history, config):
    # No alarm and no hold-window end in these histories: only a boot ends a held capture.
    # The world raises Broken at once if a boot leaves anything held; here, every capture
    # held when the power went was decided by that boot, sent or shredded as configured.
    world = World(config)
    held, decided_at_boot = 0, 0
    for s in history:
        world.step(s)
        if s[0] == "seal":
            held += 1
        if s[0] == "reboot" or (s[0] == "seal" and s[2]):
            decided_at_boot, held = decided_at_boot + held, 0
    assert world.boot_claimed + world.boot_shredded == decided_at_boot
    if config is None:
        assert world.boot_shredded == 0, "the default power_loss trigger sends what was held"
    else:
        assert world.boot_claimed == 0, "power_loss configured %r sends nothing" % (config,)
    assert world.arrivals.keys() <= world.claimed.keys(), "a photo reached the ARC without an alarm"
    world.settle()
    world.check_the_end()
    for cid in world.order:
        assert world.gone[cid] == ("delivered" if cid in world.claimed else "shred")


def test_a_boot_sends_held_photos_with_a_power_loss_alarm_or_shreds_them_as_configured():
    for config, how in ((None, "delivered"), ({"sends": False}, "shred"), ({"enabled": False}, "shred")):
        world = World(config)
        world.step(["seal", False, False])  # the disarm photos, held
        world.step(["reboot"])              # inside the hold window
        (cid,) = world.order
        assert cid not in world.policy_held
        if how == "delivered":
            assert world.flash[cid][0] == RECORD_SENDING and cid in world.claimed
            for s in (["take"], ["arc_gets", 1], ["acked", True], ["receipt", 0, False]):
                world.step(s)
        assert world.gone == {cid: how} and not world.flash, config


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([["seal", True, False], ["take"], ["arc_gets", 1], ["acked", True],
                                 ["lose", 0], ["receipt", 0, True], ["tick", 3 * RECEIPT_TIMEOUT_MS],
                                 ["arc_resend", 0], ["reboot"]]), max_size=60))
def test_a_capture_sent_again_and_again_is_stored_once_at_the_arc(history):
    world = World()
    for s in history:
        world.step(s)
    world.settle()
    world.check_the_end()
    for cid, stored in world.arc_stored.items():
        assert stored[2] == 1
        assert len(set(world.arrivals[cid])) == 1, "every copy is the same bytes for the same alarm"


def test_a_lost_receipt_means_the_capture_again_and_the_arc_keeps_one_copy():
    world = World()
    for s in (["seal", True, False], ["take"], ["arc_gets", 1], ["acked", True], ["lose", 0],
              ["tick", RECEIPT_TIMEOUT_MS], ["take"], ["arc_gets", 1], ["acked", True], ["lose", 0],
              ["tick", 2 * RECEIPT_TIMEOUT_MS], ["take"], ["arc_gets", 1], ["acked", True]):
        world.step(s)
    (cid,) = world.order
    assert len(world.arrivals[cid]) == 3 and world.arc_stored[cid][2] == 1
    assert cid in world.flash, "still on flash: no receipt has reached the device"
    world.step(["receipt", 0, False])
    assert world.gone == {cid: "delivered"} and not world.flash


def test_receipt_timeouts_double_the_wait_up_to_16_times():
    d = Delivery(1000)
    cid, alarm = b"c" * 16, b"a" * 8
    d.on_sealed(cid, "smoke")
    d.on_claimed(cid, alarm)
    now, waits = 0, []
    for _ in range(7):
        assert d.next_capture() == (cid, alarm)
        d.on_published(cid, b"h" * 32, now)
        waits.append(d.next_deadline() - now)
        assert d.on_tick(d.next_deadline() - 1) == []
        now = d.next_deadline()
        (queued,) = d.on_tick(now)
        assert queued[:3] == ("queued", cid, "receipt_timeout")
    assert waits == [1000, 2000, 4000, 8000, 16000, 16000, 16000]


def test_a_receipt_that_overtakes_the_last_pubacks_counts_when_they_come():
    d = Delivery(1000)
    cid, sha = b"c" * 16, b"h" * 32
    d.on_sealed(cid, "smoke")
    d.on_claimed(cid, b"a" * 8)
    d.next_capture()
    assert d.on_receipt(cid, RECEIPT_STORED, 3, sha) == []
    assert cid in d.captures, "nothing is deleted before every chunk was acknowledged"
    assert d.on_published(cid, sha, 0) == [("delivered", cid, 3)]
    assert not d.captures


def test_a_receipt_for_other_bytes_deletes_nothing_and_a_rejection_of_them_means_resend():
    d = Delivery(1000)
    cid, sha = b"c" * 16, b"h" * 32
    d.on_sealed(cid, "smoke")
    d.on_claimed(cid, b"a" * 8)
    d.next_capture()
    d.on_published(cid, sha, 0)
    assert d.on_receipt(cid, RECEIPT_STORED, 3, b"x" * 32) == [("ignored", cid)]
    assert d.on_receipt(b"u" * 16, RECEIPT_STORED, 3, sha) == [("ignored", b"u" * 16)]
    assert d.on_receipt(cid, RECEIPT_REJECTED, 0, b"x" * 32) == [("queued", cid, "resend", 0)]
    assert d.captures[cid][0] == QUEUED


def test_the_end_of_a_hold_window_never_shreds_a_capture_an_alarm_claimed():
    d = Delivery(1000)
    held, claimed = b"h" * 16, b"c" * 16
    for cid in (held, claimed):
        d.on_sealed(cid, "disarm")
        d.on_held(cid)
    d.on_claimed(claimed, b"a" * 8)
    assert d.on_hold_ended(claimed) == []
    assert d.on_hold_ended(held) == [("shred", held)]
    assert d.on_hold_ended(held) == []


def test_after_a_reboot_a_claimed_capture_is_sent_and_every_other_one_is_held():
    alarm = "0102030405060708"
    found = [(b"1" * 16, {"s": RECORD_SENDING, "t": "smoke", "a": alarm}),
             (b"2" * 16, {"s": RECORD_CAPTURING, "t": "tamper", "a": alarm}),
             (b"3" * 16, {"s": RECORD_CAPTURING, "t": "disarm"}),
             (b"4" * 16, {"s": RECORD_HELD, "t": "disarm"})]
    d = Delivery(1000)
    actions = d.on_boot(found)
    assert [a for a in actions if a[0] == "restore"] == [
        ("restore", b"1" * 16, "smoke", bytes.fromhex(alarm)), ("restore", b"2" * 16, "tamper", bytes.fromhex(alarm)),
        ("restore", b"3" * 16, "disarm", None), ("restore", b"4" * 16, "disarm", None)]
    assert ("record", b"2" * 16, RECORD_SENDING, "tamper", bytes.fromhex(alarm)) in actions
    assert ("record", b"3" * 16, RECORD_HELD, "disarm", None) in actions
    assert [d.next_capture(), d.next_capture(), d.next_capture()] == [
        (b"1" * 16, bytes.fromhex(alarm)), (b"2" * 16, bytes.fromhex(alarm)), None]
    assert set(BOOT_RULES.values()) == {QUEUED}


def test_every_phase_has_a_way_out_and_only_receipts_and_hold_ends_destroy():
    phases = {SEALED, HELD, QUEUED, PUBLISHING, AWAITING}
    assert {before for before, _ in TRANSITIONS} == phases
    # key_lost is no exception to the promise: it drops a capture that nothing can open any more.
    assert {event for (_, event), after in TRANSITIONS.items() if after is None} == {
        "stored", "rejected", "hold_ended", "key_lost"}
    assert [k for k, after in TRANSITIONS.items() if k[1] == "key_lost"] == [(PUBLISHING, "key_lost")]
    assert (QUEUED, "hold_ended") not in TRANSITIONS and (AWAITING, "hold_ended") not in TRANSITIONS


def test_the_same_properties_hold_on_micropython(tmp_path):
    played = []

    @settings(max_examples=150, deadline=None, database=None)
    @given(histories, st.integers(min_value=0), power_loss)
    def collect(history, at, config):
        history = with_reboot(history, at)
        played.append(([history, config], play(history, config)))  # checked on CPython first

    collect()
    path = tmp_path / "histories.json"
    path.write_text(json.dumps([h for h, _ in played]))
    done = run_micropython(REPLAY, str(path), timeout=600)
    out = done.stdout.decode().splitlines()
    assert done.returncode == 0, "\n".join(out[-20:]) + done.stderr.decode()[-2000:]
    results = [json.loads(line) for line in out]
    assert results[-1] == {"histories": len(played), "broken": 0}
    for (history, cpython), result in zip(played, results):
        assert "ok" in result, (history, result)
        # Which capture goes first may differ with the runtime's dict order; what was
        # sealed, what an alarm claimed and that every capture ended may not.
        assert result["ok"] == cpython, history


def test_a_capture_whose_key_slot_is_lost_while_publishing_leaves_and_blocks_no_other():
    d = Delivery()
    lost, other = b"L" * 16, b"O" * 16
    for cid in (lost, other):
        d.on_sealed(cid, 2)
        d.on_claimed(cid, b"A" * 8)
    assert d.next_capture() == (lost, b"A" * 8)
    assert d.on_key_lost(other) == [], "only a capture being published can be found without its key"
    assert d.on_key_lost(lost) == [("dropped", lost)]
    assert lost not in d.captures
    assert d.on_receipt(lost, RECEIPT_STORED, 3, b"\0" * 32) == [("ignored", lost)]
    assert d.next_capture() == (other, b"A" * 8), "the next capture is published as usual"


def test_a_cover_is_delivered_like_a_claimed_capture_and_a_twin_never_leaves():
    # A cover goes out under its own alarm id and leaves the flash on its receipt; a twin the
    # power cut left behind is discarded at boot, never published, never counted as held
    # photos (which would raise a power_loss alarm for nothing).
    world = World()
    world.step(["cover", False])
    world.step(["twin", True])           # the power goes before the agent shredded the twin
    cover, twin = world.order
    assert world.gone == {twin: "discard"} and world.boot_claimed == world.boot_shredded == 0
    assert world.flash[cover][0] == RECORD_SENDING, "the cover is still queued after the reboot"
    for s in (["take"], ["arc_gets", 1], ["acked", True], ["receipt", 0, False]):
        world.step(s)
    assert world.gone == {twin: "discard", cover: "delivered"} and not world.flash
    assert set(world.arrivals) == {cover}


def test_a_boot_discards_only_a_cover_without_an_alarm_id():
    alarm = "0102030405060708"
    found = [(b"1" * 16, {"s": RECORD_CAPTURING, "t": "cover"}),
             (b"2" * 16, {"s": RECORD_CAPTURING, "t": "cover", "a": alarm}),
             (b"3" * 16, {"s": RECORD_SENDING, "t": "cover", "a": alarm}),
             (b"4" * 16, {"s": RECORD_HELD, "t": "disarm"})]
    actions = Delivery(1000).on_boot(found)
    assert [a for a in actions if a[0] == "discard"] == [("discard", b"1" * 16)]
    assert {a[1] for a in actions if a[0] == "restore"} == {b"2" * 16, b"3" * 16, b"4" * 16}
    assert list(COVER_BOOT_RULE.values()) == ["discard"]
