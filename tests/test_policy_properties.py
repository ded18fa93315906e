"""Properties of the capture policy under random panel events and time (hypothesis, on CPython).

The policy module is plain Python that runs unchanged on MicroPython (the end-to-end tests
run it there); here it is driven through thousands of random histories in milliseconds.
"""

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))

from vericam.policy import PANEL_EVENTS, CapturePolicy  # noqa: E402

ALL_ON = {name: {"enabled": True} for name in ("intrusion", "duress", "tamper", "sos", "panic", "silent")}
HOLD = 60_000

steps = st.lists(
    st.tuples(
        st.sampled_from(sorted(PANEL_EVENTS)),
        st.integers(min_value=0, max_value=90_000),   # ms before this event
        st.booleans(),                                 # does the pending capture finish before it?
    ),
    max_size=40,
)


def play(history, triggers):
    counter = iter(range(1, 10**6))
    policy = CapturePolicy(triggers, HOLD, new_id=lambda n: next(counter).to_bytes(n, "big"))
    now = 0
    pending = []            # refs being captured
    alarms = set()          # alarm ids that fired
    sent, shredded, held_until = {}, {}, {}
    captured = 0

    def apply(actions, at):
        nonlocal captured
        for a in actions:
            if a[0] == "alarm":
                alarms.add(a[1])
            elif a[0] == "capture":
                pending.append(a[1])
            elif a[0] == "send":
                assert a[1] not in sent and a[1] not in shredded, "a capture decided twice"
                assert a[2] in alarms, "sent without an alarm"
                sent[a[1]] = a[2]
            elif a[0] == "shred":
                assert a[1] not in sent and a[1] not in shredded, "a capture decided twice"
                assert at >= held_until[a[1]], "shredded before its hold window ended"
                shredded[a[1]] = at
            elif a[0] == "keep":
                held_until[a[1]] = a[2]

    def finish_one():
        nonlocal captured
        ref = pending.pop(0)
        captured += 1
        apply(policy.on_captured(ref, ("cap", captured), now), now)

    for event, gap, finish_first in history:
        # Time passes in ticks of at most 1 s, as the agent's tick task does.
        end = now + gap
        while now < end:
            now = min(end, now + 1000)
            apply(policy.on_tick(now), now)
        if finish_first and pending:
            finish_one()
        apply(policy.on_panel(event, now, slot=1), now)
    while pending:
        finish_one()
    # Run the clock past every hold window.
    end = now + HOLD + 2000
    while now < end:
        now += 1000
        apply(policy.on_tick(now), now)
    return captured, sent, shredded, held_until, alarms


@settings(max_examples=400, deadline=None)
@given(steps, st.sampled_from([None, ALL_ON]))
def test_every_capture_ends_sent_or_shredded_and_nothing_is_sent_without_an_alarm(history, triggers):
    captured, sent, shredded, held_until, _alarms = play(history, triggers)
    decided = set(sent) | set(shredded)
    assert len(decided) == captured, "a capture was left half-decided"
    for cid, at in shredded.items():
        assert at - held_until[cid] <= 1000, "shredded more than 1 s after its hold window ended"


@settings(max_examples=200, deadline=None)
@given(steps)
def test_without_an_alarm_nothing_is_ever_sent(history):
    calm = [(e, gap, f) for e, gap, f in history if not PANEL_EVENTS[e][1]]
    captured, sent, shredded, _held, alarms = play(calm, ALL_ON)
    assert not alarms and not sent
    assert len(shredded) == captured


def test_disarm_then_sabotage_sends_the_disarm_photos_with_the_alarm():
    ids = iter(range(1, 100))
    p = CapturePolicy(ALL_ON, HOLD, new_id=lambda n: next(ids).to_bytes(n, "big"))
    (cap,) = [a for a in p.on_panel("disarmed", 0, slot=2) if a[0] == "capture"]
    assert p.on_captured(cap[1], b"disarm-photos", 3000)[0][0] == "keep"
    actions = p.on_panel("tamper", 30_000)
    sends = [a for a in actions if a[0] == "send"]
    assert [a[1] for a in sends] == [b"disarm-photos"]
    assert any(a[0] == "capture" and a[2] == "tamper" for a in actions)


def test_disarm_photos_without_an_alarm_are_shredded_within_a_second_of_the_window():
    p = CapturePolicy(None, HOLD, new_id=lambda n: b"\x01" * n)
    (cap,) = [a for a in p.on_panel("disarmed", 0, slot=1) if a[0] == "capture"]
    p.on_captured(cap[1], b"c", 2500)
    assert p.on_tick(2500 + HOLD - 1) == []
    assert p.on_tick(2500 + HOLD) == [("shred", b"c")]
    assert p.next_deadline() is None
