"""DC-09 rows of the newer events: power_loss and the key-slot troubles go out; the gateway's refusals do not.

Each forwarded row is read back by pysiaalarm (the receiver Home Assistant uses) from an
encrypted message, in both formats, and its Contact ID code must convert to its SIA DCS code
as a converting receiver's table has it.
"""

from __future__ import annotations

import time

import pytest
from pysiaalarm import SIAAccount
from pysiaalarm.base_server import BaseSIAServer
from pysiaalarm.utils import ADM_MAPPING, SIA_CODES, Counter

from gateway.forward import codes, dc09

KEY = "0123456789ABCDEF"
SITE = dc09.Account("1234", prefix="1", receiver="12")
NEW = {"power_loss": ("TA", "137"), "key_slots_exhausted": ("ET", "333"), "key_slot_lost": ("YX", "330")}


def received(fmt: str, event: str, zone: int = 4):
    """The event as pysiaalarm parses and ACKs an encrypted report of it."""
    msg = dc09.Message(fmt, 9, SITE, codes.event_data(fmt, "1234", event, 1, zone))
    raw = dc09.encode(msg, KEY.encode(), time.time())
    server = BaseSIAServer({"1234": SIAAccount("1234", KEY, allowed_timeband=None)}, Counter())
    parsed = server.parse_and_check_event(raw[1:-1])
    assert parsed.valid_message and parsed.response.value == "ACK"
    return parsed


@pytest.mark.parametrize("event", sorted(NEW))
def test_each_new_event_reaches_a_receiver_with_its_code_in_both_formats(event):
    sia, cid = NEW[event]
    assert (codes.CODES[event].sia, codes.CODES[event].cid_text) == (sia, f"E{cid}")
    assert sia in SIA_CODES and ADM_MAPPING[cid]["1"] == sia
    dcs = received(dc09.SIA_DCS, event)
    assert (dcs.account, dcs.code, dcs.ri, dcs.message) == ("1234", sia, "1", "004")
    adm = received(dc09.ADM_CID, event)
    assert (adm.event_qualifier, adm.event_type, adm.ri, adm.code) == ("1", cid, "004", sia)


def test_power_loss_is_a_tamper_alarm_with_a_verification_follow_up_not_an_ac_trouble():
    assert codes.CODES["power_loss"].sia == codes.CODES["tamper"].sia == "TA"
    assert codes.CODES["power_loss"].sia not in ("AT", "AR") and codes.CODES["power_loss"].cid != 301
    assert codes.event_data(dc09.ADM_CID, "1234", "power_loss", 1, 2, follow_up=True) == "#1234|6137 01 002"


def test_key_slots_exhausted_is_the_same_trouble_as_a_full_flash_and_a_lost_slot_is_told_apart():
    assert codes.CODES["key_slots_exhausted"].cid_text == codes.CODES["flash_full"].cid_text == "E333"
    assert codes.CODES["key_slot_lost"].cid_text not in {c.cid_text for e, c in codes.CODES.items()
                                                           if e != "key_slot_lost"}


@pytest.mark.parametrize("event", ["counter_conflict", "counter_jump", "rate_limited"])
def test_the_gateways_refusals_are_deliberately_not_forwarded(event):
    assert event in codes.NOT_FORWARDED and "supervision_lost" in codes.NOT_FORWARDED["counter_conflict"]
    with pytest.raises(codes.UnmappedEvent):
        codes.code_for(event)


def test_not_forwarded_and_forwarded_never_overlap():
    assert not set(codes.NOT_FORWARDED) & set(codes.CODES)
