"""A counter may leap only so far (PROTOCOL §3 "Counters"): a stolen key cannot push a device's counter out of reach.

Issue 14, finding 5. Whoever dumps a device's flash holds its key; one validly signed message
with a counter near 2^63 used to move the replay window so far up that every later genuine
message was a `replay`, for good. Now a counter more than COUNTER_JUMP_BASE, plus
COUNTER_JUMP_PER_S for every second the device was silent, above the highest counter seen is
refused as `counter_jump`, and a genuine device that finds itself behind its own counter raises
`counter_conflict`, so the ARC knows to rotate the key.
"""

import os

import pytest

from gateway.ingest.pipeline import Ingest, Message
from gateway.protocol import envelope as env
from gateway.protocol import errors
from gateway.protocol.keys import DeviceKeys
from gateway.provisioning.devices import add_device, init_arc
from gateway.storage.store import Store
from simulator.fake_device import FakeDevice

NOW = 1_795_300_000.0
BASE, PER_S = env.COUNTER_JUMP_BASE, env.COUNTER_JUMP_PER_S


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def site(tmp_path):
    data = tmp_path / "gw"
    init_arc(data)
    config = add_device(data, "cam-1", "site-a")
    store = Store.open(data)
    clock = Clock(NOW)
    lines = []
    ingest = Ingest(store, log=lines.append, clock=clock)
    yield ingest, config, clock, lines
    store.close()


def send(ingest, *messages):
    return ingest.process_batch([Message(t, p) for t, p in messages])


def event(device: FakeDevice, clock: Clock, counter: int | None = None, **fields):
    if counter is not None:
        device.counter = counter - 1
    body = {"kind": "technical", "code": "test", "t": int(clock()), **fields}
    return device.event(body, time_s=int(clock()))


def technical(ingest, code: str) -> list[dict]:
    return [e["event"] for e in ingest.store.events.list("cam-1") if e["code"] == code]


# The rule itself --------------------------------------------------------------------------------
def test_the_ceiling_grows_with_silence_and_counts_from_zero_before_the_first_counter():
    assert env.counter_ceiling(-1, 60) == BASE + 60 * PER_S
    assert env.counter_ceiling(5000, 0) == 5000 + BASE
    assert env.counter_ceiling(5000, 3600.9) == 5000 + BASE + 3600 * PER_S
    assert env.counter_ceiling(5000, -30) == 5000 + BASE  # a clock stepped back gives nothing extra
    # A key holder needs 2^43 accepted messages to climb from 0 to the top of the counter space.
    assert (2**63 - 1) // BASE >= 2**42


def test_a_counter_above_the_ceiling_is_counter_jump_after_replay_and_before_stale():
    keys = DeviceKeys.derive(os.urandom(32))
    window = env.ReplayWindow()

    def open_(counter, time_s=int(NOW), etype=env.T_EVENT, ceiling=100 + BASE):
        topic = env.topic_for("cam-1", etype)
        payload = env.build(etype, "cam-1", counter, time_s, b"x" * 32, keys.up, topic)
        return env.open_envelope(topic, payload, lambda d: keys, lambda d: window, NOW, lambda d: -1,
                                 lambda d: ceiling)

    open_(100)
    assert open_(100 + BASE).counter == 100 + BASE
    with pytest.raises(errors.CounterJump) as jump:
        open_(101 + BASE)
    assert jump.value.reason == "counter_jump" and jump.value.device == "cam-1"
    with pytest.raises(errors.CounterJump):  # beats stale: a leap from the future is a leap
        open_(2**63 - 2, time_s=int(NOW) + 3600)
    with pytest.raises(errors.Replay):       # a replay stays a replay, whatever the ceiling
        open_(100, ceiling=0)
    with pytest.raises(errors.CounterJump):  # statuses are held to it too (their own order, §7)
        open_(2**63 - 2, etype=env.T_STATUS)


# At the ingest ------------------------------------------------------------------------------------
def test_a_genuine_device_that_rebooted_a_thousand_times_unheard_is_accepted(site):
    """Each reboot skips up to 255 counters (firmware/vericam/counter.py leases blocks of 256)."""
    ingest, config, clock, _ = site
    dev = FakeDevice(config)
    send(ingest, event(dev, clock, counter=10))
    clock.t += 5  # a boot loop is heard of only once it ends; the queue at the broker comes at once
    result = send(ingest, event(dev, clock, counter=10 + 1000 * 256), dev.status("online"),
                  event(dev, clock, counter=10 + 1001 * 256))
    assert result.rejected == {}
    assert len(ingest.store.events.list("cam-1")) == 3


def test_the_allowance_grows_with_the_silence_the_gateway_measured(site):
    ingest, config, clock, _ = site
    dev = FakeDevice(config)
    send(ingest, event(dev, clock, counter=1))
    clock.t += 86_400  # a day without a word: a refused login loop, say, at 2 counters a try
    assert send(ingest, event(dev, clock, counter=1 + BASE + 86_400 * PER_S)).rejected == {}
    highest = 1 + BASE + 86_400 * PER_S
    assert send(ingest, event(dev, clock, counter=highest + BASE + 1)).rejected == {"counter_jump": 1}


def test_a_stolen_key_cannot_push_the_counter_to_the_top_and_the_arc_hears_of_the_attempt(site):
    ingest, config, clock, lines = site
    genuine, thief = FakeDevice(config), FakeDevice(config)
    assert send(ingest, event(genuine, clock, counter=500)).rejected == {}
    attempts = [event(thief, clock, counter=c, code="tamper") for c in (2**63 - 2, 2**62, 500 + BASE + 1)]
    attempts.append(thief.envelope(env.T_STATUS, b'{"state":"offline","fw":"x"}', counter=2**63 - 1))
    result = send(ingest, *attempts)
    assert result.rejected == {"counter_jump": 4}
    assert not technical(ingest, "tamper")
    # One technical event, however many attempts in the minute, saying how many it stands for.
    [alarm] = technical(ingest, "counter_jump")
    assert alarm["source"] == "gateway" and alarm["refused"] == 1
    assert sum("technical alarm counter_jump: device=cam-1" in line for line in lines) == 1
    # The genuine device goes on as if nothing had happened: events, status, a capture.
    cid, sealed = genuine.seal([b"\xff\xd8" + os.urandom(3000) + b"\xff\xd9"])
    result = send(ingest, event(genuine, clock), genuine.status("online"),
                  *genuine.chunk_messages(cid, sealed, os.urandom(8), time_s=int(clock())))
    assert result.rejected == {} and len(result.stored) == 1
    assert ingest.store.devices.list()[0]["online"] == 1
    # A minute later the next attempt raises the next event, with the count it stands for.
    ingest.notices.clock = lambda: 1e12
    send(ingest, event(thief, clock, counter=2**63 - 2))
    assert [a["refused"] for a in technical(ingest, "counter_jump")] == [1, 4]
    assert ingest.store.rejections.counts() == {"counter_jump": 5}


def test_a_device_pushed_behind_its_own_counter_raises_counter_conflict_until_its_key_is_rotated(site):
    """Inside the bound a key holder can still put the window ahead of the genuine device
    (PROTOCOL §3 "Counters"). The gateway cannot tell who is genuine; it refuses the late
    comer as a replay, as before, and raises `counter_conflict` so the ARC rotates the key."""
    ingest, config, clock, lines = site
    genuine, thief = FakeDevice(config), FakeDevice(config)
    send(ingest, event(genuine, clock, counter=100))
    assert send(ingest, event(thief, clock, counter=100 + 50_000)).rejected == {}
    refused = send(ingest, event(genuine, clock), event(genuine, clock))
    assert refused.rejected == {"replay": 2}
    [conflict] = technical(ingest, "counter_conflict")
    assert conflict["source"] == "gateway"
    assert any("technical alarm counter_conflict: device=cam-1" in line for line in lines)
    # A message stamped 10 minutes ago is no conflict: it may be any old message replayed.
    ingest.notices.clock = lambda: 1e12  # the minute has passed
    assert send(ingest, event(genuine, Clock(clock.t - 600))).rejected == {"replay": 1}
    assert len(technical(ingest, "counter_conflict")) == 1
    # The answer: rotate the key. The new window takes the genuine device's counter as it is.
    new_key = os.urandom(32)
    with ingest.store.transaction():
        ingest.store.devices.rekey("cam-1", new_key)
    rotated = FakeDevice({**config, "device_key": new_key.hex()}, counter=genuine.counter)
    assert send(ingest, event(rotated, clock), rotated.status("online")).rejected == {}
    assert send(ingest, event(thief, clock, counter=200_000)).rejected == {"bad_mac": 1}


def test_the_bound_is_kept_in_step_with_a_rolled_back_message(site):
    """A status accepted and then undone with its message's savepoint leaves no trace in the bound."""
    ingest, config, clock, _ = site
    dev = FakeDevice(config)
    send(ingest, event(dev, clock, counter=10))
    with ingest.store.batch(["cam-1"]):
        with pytest.raises(RuntimeError):
            with ingest.store.savepoint():
                ingest.store.devices.set_status("cam-1", True, "x", int(NOW * 1000), 10 + 3 * BASE)
                assert ingest.store.devices.counter_ceiling("cam-1", int(NOW * 1000)) == 10 + 4 * BASE
                raise RuntimeError("the message failed")
        assert ingest.store.devices.counter_ceiling("cam-1", int(NOW * 1000)) == 10 + BASE
    assert ingest.store.devices.counter_ceiling("cam-1", int(NOW * 1000)) == 10 + BASE
