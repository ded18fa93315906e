"""DC-09 framing as an independent receiver reads it: pysiaalarm's parser and pycryptodome's AES.

What a receiving centre would check on every line the gateway sends: the CRC and length agree
with the body, the encrypted region is whole AES blocks that decrypt (with another AES
implementation) to pad, "|", data and timestamp, and the real parser that Home Assistant uses
finds the account, the event code, the area and the zone. And the other way: what a receiver
answers (ACK, NAK with its clock, DUH) is understood, and garbage is refused with a reason.
"""

from __future__ import annotations

import random
import re
import time

import pytest
from Crypto.Cipher import AES
from pysiaalarm import SIAAccount
from pysiaalarm.base_server import BaseSIAServer
from pysiaalarm.event import SIAEvent
from pysiaalarm.utils import ADM_MAPPING, SIA_CODES, Counter

from gateway.forward import codes, dc09
from gateway.protocol.capture import TRIGGERS

KEYS = {128: "0123456789ABCDEF", 192: "0123456789ABCDEF01234567", 256: "0123456789ABCDEF0123456789ABCDEF"}
AT = 1_795_300_000          # 2026-11-21 22:26:40 UTC
SITE = dc09.Account("1234", prefix="1", receiver="12")


def pysia_receiver(key: str | None) -> BaseSIAServer:
    """pysiaalarm's receiver logic without its sockets. Its keys are ASCII strings whose bytes are the AES key."""
    return BaseSIAServer({"1234": SIAAccount("1234", key, allowed_timeband=None)}, Counter())


def line(raw: bytes) -> bytes:
    assert raw[:1] == b"\n" and raw[-1:] == b"\r"
    return raw[1:-1]


def test_crc_is_the_crc16_arc_receivers_compute():
    assert dc09.crc16(b"123456789") == 0xBB3D            # the CRC-16/ARC check value
    rng = random.Random(16)
    for _ in range(200):
        text = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 80)))
        assert f"{dc09.crc16(text.encode()):04X}" == SIAEvent._crc_calc(text)


def test_a_plain_sia_dcs_line_byte_for_byte():
    msg = dc09.Message(dc09.SIA_DCS, 42, SITE, dc09.sia_dcs_data("1234", "BA", 1, 3))
    raw = dc09.encode(msg, None, AT)
    body = '"SIA-DCS"0042R12L1#1234[#1234|Nri1/BA003]_22:26:40,11-21-2026'
    assert raw == b"\n" + f"{dc09.crc16(body.encode()):04X}{len(body):04X}".encode() + body.encode() + b"\r"
    assert raw[5:9] == b"003D"                            # 0LLL: 61 characters


@pytest.mark.parametrize("bits", sorted(KEYS))
@pytest.mark.parametrize("fmt", [dc09.SIA_DCS, dc09.ADM_CID])
def test_an_encrypted_report_is_read_by_pysiaalarm_and_decrypts_with_another_aes(bits, fmt):
    key = KEYS[bits].encode()
    data = codes.event_data(fmt, "1234", "intrusion", area=1, zone=3)
    link = "https://arc.example/console/alarms/dev-1/5f1c"
    msg = dc09.Message(fmt, 42, SITE, data, (("V", link),))
    raw = dc09.encode(msg, key, time.time())

    body = line(raw)[8:].decode()
    assert body.startswith(f'"*{fmt}"0042R12L1#1234[')
    secret = bytes.fromhex(body[body.index("[") + 1:])
    assert len(secret) % 16 == 0
    plain = AES.new(key, AES.MODE_CBC, bytes(16)).decrypt(secret).decode("ascii")
    pad, rest = plain.split("|", 1)
    assert 1 <= len(pad) <= 16 and not set(pad) & set("|[]")
    assert re.fullmatch(re.escape(data + f"][V{link}]") + r"_\d\d:\d\d:\d\d,\d\d-\d\d-\d{4}", rest)

    event = pysia_receiver(KEYS[bits]).parse_and_check_event(line(raw))
    assert event.valid_message and event.response.value == "ACK"
    assert (event.account, event.sequence, event.encrypted) == ("1234", "0042", True)
    assert event.x_data == f"V{link}"
    if fmt == dc09.SIA_DCS:
        assert (event.code, event.ri, event.message) == ("BA", "1", "003")     # area 1, zone 3
    else:
        assert (event.event_qualifier, event.event_type, event.partition, event.ri) == ("1", "130", "01", "003")
        assert event.code == "BA"


def test_the_pad_fills_whole_blocks_and_a_whole_message_gets_sixteen():
    key = KEYS[128].encode()
    for length in range(0, 40):
        data = "#1234|Nri1/BA" + "0" * length
        msg = dc09.Message(dc09.SIA_DCS, 1, SITE, data)
        plain_len = len(data) + 1 + len("_00:00:00,01-01-2026")
        body = line(dc09.encode(msg, key, AT))[8:].decode()
        secret = bytes.fromhex(body[body.index("[") + 1:])
        pad = AES.new(key, AES.MODE_CBC, bytes(16)).decrypt(secret).decode().split("|", 1)[0]
        assert len(secret) % 16 == 0
        assert len(pad) == (16 if (plain_len + 1) % 16 == 0 else 16 - (plain_len + 1) % 16)


def test_a_resend_has_the_same_number_and_a_different_ciphertext():
    key = KEYS[256].encode()
    msg = dc09.Message(dc09.ADM_CID, 7, SITE, codes.event_data(dc09.ADM_CID, "1234", "smoke", 1, 2))
    first, second = dc09.encode(msg, key, AT), dc09.encode(msg, key, AT)
    assert first != second
    assert dc09.decode(first, key).seq == dc09.decode(second, key).seq == 7
    assert dc09.decode(first, key).data == dc09.decode(second, key).data == "#1234|1111 01 002"


def test_sequence_numbers_run_from_0001_to_9999_and_round_again():
    assert dc09.next_seq(1) == 2 and dc09.next_seq(9998) == 9999 and dc09.next_seq(9999) == 1
    with pytest.raises(dc09.DC09Error, match="0001-9999"):
        dc09.Message(dc09.NULL, 0, SITE)


def test_an_encrypted_null_is_a_link_test_pysiaalarm_acks():
    key = KEYS[192]
    raw = dc09.encode(dc09.Message(dc09.NULL, 9, dc09.Account("ABCD")), key.encode(), time.time())
    assert line(raw)[8:].startswith(b'"*NULL"0009L0#ABCD[')
    server = BaseSIAServer({"ABCD": SIAAccount("ABCD", key)}, Counter())
    event = server.parse_and_check_event(line(raw))
    assert (event.code, event.response.value) == ("RP", "ACK")


@pytest.mark.parametrize("bits", [128, None])
def test_pysiaalarms_ack_is_understood_and_checked(bits):
    key = KEYS[bits] if bits else None
    msg = dc09.Message(dc09.SIA_DCS, 77, SITE, dc09.sia_dcs_data("1234", "FA", 1, 1))
    raw = dc09.encode(msg, key.encode() if key else None, time.time())
    ack = pysia_receiver(key).parse_and_check_event(line(raw)).create_response()
    answer = dc09.read_answer(ack, msg, key.encode() if key else None)
    assert answer.kind == dc09.ACK and answer.delivered
    assert answer.frame.encrypted == bool(key)
    if key:                                    # the encrypted ACK carries the receiver's clock
        assert abs(answer.receiver_time - time.time()) < 5


def test_a_nak_carries_the_receivers_clock():
    key = KEYS[128]
    msg = dc09.Message(dc09.SIA_DCS, 5, SITE, dc09.sia_dcs_data("1234", "BA", 1, 3))
    stale = dc09.encode(msg, key.encode(), time.time() - 600)     # our clock ten minutes slow
    server = BaseSIAServer({"1234": SIAAccount("1234", key)}, Counter())
    nak = server.parse_and_check_event(line(stale)).create_response()
    answer = dc09.read_answer(nak, msg, key.encode())
    assert answer.kind == dc09.NAK and not answer.delivered
    assert abs(answer.receiver_time - time.time()) < 5


def test_a_wrong_key_is_refused_by_pysiaalarm():
    msg = dc09.Message(dc09.SIA_DCS, 5, SITE, dc09.sia_dcs_data("1234", "BA", 1, 3))
    raw = dc09.encode(msg, b"FEDCBA9876543210", time.time())
    answer = pysia_receiver(KEYS[128]).parse_and_check_event(line(raw)).create_response()
    assert dc09.read_answer(answer, msg, b"FEDCBA9876543210").kind == dc09.NAK


def frame(body: str) -> bytes:
    """A receiver's line built here, independently of the code under test's encoder."""
    crc = SIAEvent._crc_calc(body)
    return f"\n{crc}{len(body):04X}{body}\r".encode()


def test_duh_and_answers_to_another_message():
    msg = dc09.Message(dc09.SIA_DCS, 5, SITE, dc09.sia_dcs_data("1234", "BA", 1, 3))
    assert dc09.read_answer(frame('"DUH"0005R12L1#1234[]'), msg, None).kind == dc09.DUH
    with pytest.raises(dc09.BadAnswer, match="sequence number 0006, but 0005"):
        dc09.read_answer(frame('"ACK"0006R12L1#1234[]'), msg, None)
    with pytest.raises(dc09.BadAnswer, match="account 9999"):
        dc09.read_answer(frame('"ACK"0005R12L1#9999[]'), msg, None)
    with pytest.raises(dc09.BadAnswer, match="plain ACK to an encrypted message"):
        dc09.read_answer(frame('"ACK"0005R12L1#1234[]'), msg, KEYS[128].encode())
    with pytest.raises(dc09.BadAnswer, match="not one of"):
        dc09.read_answer(frame('"SIA-DCS"0005R12L1#1234[]'), msg, None)


@pytest.mark.parametrize("raw, reason", [
    (b"HELLO WORLD\r\n", "does not start with a 4-digit hex CRC"),
    (b"\n\xff\xfe\xfd garbage\r", "not ASCII"),
    (frame('"ACK"0005R12L1#1234[]')[:-3] + b"X]\r", "CRC"),
    (b'\n12340FFF"ACK"0005L0#1234[]\r', "length field says 4095"),
    (frame('ACK0005L0#1234[]'), "does not start"),
    (frame('"ACK"0005L0#1234[no close'), "no closing ]"),
    (frame('"ACK"0005L0#1234[]_yesterday'), "not a _HH:MM:SS"),
    (frame('"*ACK"0005L0#1234[0011'), "whole AES blocks"),
])
def test_garbage_is_refused_with_a_reason(raw, reason):
    msg = dc09.Message(dc09.SIA_DCS, 5, dc09.Account("1234"), dc09.sia_dcs_data("1234", "BA", 1, 3))
    with pytest.raises(dc09.BadFrame, match=reason):
        dc09.read_answer(raw, msg, KEYS[128].encode())


def test_an_encrypted_ack_under_another_key_is_refused():
    msg = dc09.Message(dc09.SIA_DCS, 5, SITE, dc09.sia_dcs_data("1234", "BA", 1, 3))
    raw = dc09.encode(msg, KEYS[128].encode(), time.time())
    ack = pysia_receiver(KEYS[128]).parse_and_check_event(line(raw)).create_response()
    with pytest.raises(dc09.BadFrame, match="wrong key"):
        dc09.read_answer(ack, msg, b"FEDCBA9876543210")


def test_bad_input_is_refused_before_anything_is_sent():
    with pytest.raises(dc09.DC09Error, match="3 to 16 hex digits"):
        dc09.Account("12G4")
    with pytest.raises(dc09.DC09Error, match="16, 24 or 32 bytes"):
        dc09.encode(dc09.Message(dc09.NULL, 1, SITE), b"short", AT)
    with pytest.raises(dc09.DC09Error, match="percent-encode"):
        dc09.Message(dc09.SIA_DCS, 1, SITE, "#1234|Nri1/BA003", (("V", "https://x/[1]"),))
    with pytest.raises(dc09.DC09Error, match="longer than"):
        dc09.encode(dc09.Message(dc09.SIA_DCS, 1, SITE, "#1234|Nri1/BA003", (("V", "x" * 5000),)), None, AT)


# The mapping table -------------------------------------------------------------------------
ALARM_TRIGGERS = sorted(set(TRIGGERS.values()) - {"disarm"})


def test_every_alarm_trigger_of_the_device_has_a_code():
    vericam = {"intrusion", "smoke", "duress", "panic", "sos", "silent", "tamper",
               "supervision_lost", "supervision_restored", "flash_full"}
    assert set(ALARM_TRIGGERS) <= vericam <= set(codes.CODES)
    with pytest.raises(codes.UnmappedEvent, match="flash_low"):
        codes.code_for("flash_low")


@pytest.mark.parametrize("event", ALARM_TRIGGERS + ["flash_full", "fire"])
def test_contact_id_and_sia_dcs_codes_agree_as_a_converting_receiver_sees_them(event):
    code = codes.CODES[event]
    assert code.sia in SIA_CODES, f"{code.sia} is not an SIA DCS code pysiaalarm knows"
    assert ADM_MAPPING[f"{code.cid:03d}"]["1"] == code.sia


def test_restorals_go_out_as_contact_id_qualifier_3_and_follow_ups_as_6():
    assert codes.event_data(dc09.ADM_CID, "1234", "supervision_restored", 1, 7) == "#1234|3381 01 007"
    assert codes.event_data(dc09.ADM_CID, "1234", "supervision_lost", 1, 7) == "#1234|1381 01 007"
    assert codes.event_data(dc09.ADM_CID, "1234", "intrusion", 2, 3, follow_up=True) == "#1234|6130 02 003"
    assert codes.event_data(dc09.SIA_DCS, "1234", "supervision_restored", 1, 7) == "#1234|Nri1/EN007"
    assert codes.CODES["supervision_restored"].cid_text == "R381"
