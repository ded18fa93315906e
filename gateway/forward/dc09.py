"""SIA DC-09 framing: a report as the bytes a receiver expects, and the receiver's answer from bytes.

Sans-IO, like h11: `encode` turns a `Message` into bytes, `decode` turns bytes into a `Frame`,
and `read_answer` judges a receiver's answer to a message. The caller owns sockets and time.

Theory of operation (ANSI/SIA DC-09-2013 and DC-09-2021, "Internet Protocol Event Reporting").
Every message, and every answer, is one line:

    <LF> <crc> <0LLL> "<id>" <seq> R<rcvr> L<pref> #<acct> [ <data> ] [<xdata>]... _<timestamp> <CR>

- `crc`: CRC-16/ARC (polynomial 0x8005, reflected as 0xA001, initial value 0) of the body, the
  characters from the opening quote of `"<id>"` to the end of the timestamp, as 4 hex digits.
- `0LLL`: the length of that same body, as 4 hex digits whose first is 0 (so at most 0xFFF).
- `id`: the token. `SIA-DCS` (SIA DC-03/DC-04 data), `ADM-CID` (Ademco Contact ID), `NULL`
  (a link test), and in answers `ACK`, `NAK`, `DUH`, `RSP`. A `*` before it marks an
  encrypted message: `"*SIA-DCS"`, `"*ADM-CID"`, `"*NULL"`, `"*ACK"`.
- `seq`: 4 decimal digits, 0001 to 9999 and round again. A message sent again (no answer,
  a NAK) keeps its number, so that a receiver that got it twice can drop the copy.
- `R<rcvr>` (optional) receiver number and `L<pref>` account prefix: 1 to 6 hex digits each.
  `#<acct>`: the account, 3 to 16 hex digits: the number the panel itself reports under.
- `[<data>]`: for SIA-DCS e.g. `#1234|Nri1/BA003` (new event, area 1, burglary, zone 3);
  for ADM-CID `#1234|1130 01 003` (qualifier 1 new event / 3 restore / 6 status, event 130,
  partition 01, zone 003); for NULL and answers empty.
- extended data, each `[<letter><value>]`: here only `V`, the verification field: "an internet
  or intranet address to access alarm verification information". The alarm's console page.
- `_HH:MM:SS,MM-DD-YYYY`: the time of sending, UTC. A receiver refuses (NAK) an encrypted
  message whose timestamp is too far from its own clock (DC-09: -20 s/+40 s is usual), and its
  NAK carries its own time, so the sender can correct its clock for that receiver and resend.

Encryption (DC-09 section 5.4): AES in CBC mode with a 128, 192 or 256-bit key and an all-zero
initialisation vector. Everything after the opening `[` is encrypted: pseudo-random pad
characters, a `|`, the data, its `]`, the extended data and the timestamp. The pad makes that
region a whole number of 16-byte blocks, 1 to 16 characters (16 when it already was whole);
it never contains `|`, `[` or `]`, and it varies from message to message, which is what makes
two encryptions of the same report differ with a zero IV. The ciphertext is sent as upper-case
hex, and the frame's CRC and length are computed over that hex.
"""

from __future__ import annotations

import datetime as _dt
import re
import secrets
import string
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SIA_DCS = "SIA-DCS"
ADM_CID = "ADM-CID"
NULL = "NULL"
MESSAGE_TOKENS = (SIA_DCS, ADM_CID, NULL)
ACK, NAK, DUH, RSP = "ACK", "NAK", "DUH", "RSP"
ANSWER_TOKENS = (ACK, NAK, DUH, RSP)

KEY_SIZES = (16, 24, 32)          # AES-128, AES-192, AES-256
ZERO_IV = bytes(16)               # DC-09 5.4.6: CBC with an initialisation vector of zeros
MAX_BODY = 0xFFF                  # "0LLL": the length field has three significant hex digits
SEQ_FIRST, SEQ_LAST = 1, 9999
TIMESTAMP_FORMAT = "%H:%M:%S,%m-%d-%Y"
# Pad characters: DC-09 allows any byte but |, [ and ]. Printable ASCII is a subset of that
# which every receiver decodes, including those that read the plaintext as ASCII text.
PAD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits + string.punctuation if c not in "|[]")

_HEX = re.compile(r"[0-9A-Fa-f]+")
_ACCOUNT = re.compile(r"[0-9A-Fa-f]{3,16}")
_ID_FIELD = re.compile(r"[0-9A-Fa-f]{1,6}")
# The identifiers between the sequence number and "[" are read leniently: a receiver that
# writes its fields in another order (L before R) or puts junk there (pysiaalarm echoes an
# absent receiver number as "None") still has its answer understood by CRC, token and number.
_HEAD = re.compile(r'"(\*?)([A-Z][A-Z-]{1,15})"(\d{4})([^\["]{0,64})\[')
_ID_FIELDS = {"R": re.compile(r"R([0-9A-Fa-f]{1,6})"), "L": re.compile(r"L([0-9A-Fa-f]{1,6})"),
              "#": re.compile(r"#([0-9A-Fa-f]{1,16})")}
_TIMESTAMP = re.compile(r"_(\d\d:\d\d:\d\d,\d\d-\d\d-\d{4})")
_XDATA_VALUE = re.compile(r"[\x20-\x7e]*")


class DC09Error(ValueError):
    """Something about a DC-09 message or answer is wrong; the text says what."""


class BadFrame(DC09Error):
    """Bytes that are not a well-formed DC-09 line (framing, CRC, length, encryption)."""


class BadAnswer(DC09Error):
    """A well-formed line that is not an answer to the message we sent."""


def crc16(data: bytes) -> int:
    """CRC-16/ARC of `data`: polynomial 0x8005 reflected (0xA001), initial value 0, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def format_timestamp(at: float) -> str:
    """`_HH:MM:SS,MM-DD-YYYY` in UTC for the unix time `at`."""
    return "_" + _dt.datetime.fromtimestamp(int(at), tz=_dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> float:
    """The unix time of `HH:MM:SS,MM-DD-YYYY` (UTC), with or without the leading underscore."""
    try:
        when = _dt.datetime.strptime(text.lstrip("_"), TIMESTAMP_FORMAT)
    except ValueError:
        raise BadFrame(f"timestamp {text!r} is not _HH:MM:SS,MM-DD-YYYY") from None
    return when.replace(tzinfo=_dt.timezone.utc).timestamp()


def next_seq(seq: int) -> int:
    """The sequence number after `seq`: 9999 is followed by 0001."""
    return SEQ_FIRST if seq >= SEQ_LAST else seq + 1


def check_key(key: bytes | None) -> None:
    if key is not None and len(key) not in KEY_SIZES:
        raise DC09Error(f"an AES key for DC-09 has 16, 24 or 32 bytes (128/192/256 bits), not {len(key)}")


@dataclass(frozen=True)
class Account:
    """Who a message is from, as the receiver knows it: account, account prefix, receiver number.

    The same values the panel itself reports under, so that the ARC software matches the
    panel's report and the gateway's as one site.
    """
    account: str                 # 3 to 16 hex digits
    prefix: str = "0"            # L: account prefix, 1 to 6 hex digits
    receiver: str | None = None  # R: receiver number, 1 to 6 hex digits; None leaves it out

    def __post_init__(self):
        if not _ACCOUNT.fullmatch(self.account or ""):
            raise DC09Error(f"account {self.account!r} is not 3 to 16 hex digits")
        if not _ID_FIELD.fullmatch(self.prefix or ""):
            raise DC09Error(f"account prefix (L) {self.prefix!r} is not 1 to 6 hex digits")
        if self.receiver is not None and not _ID_FIELD.fullmatch(self.receiver):
            raise DC09Error(f"receiver number (R) {self.receiver!r} is not 1 to 6 hex digits")

    def ids(self) -> str:
        return (f"R{self.receiver}" if self.receiver is not None else "") + f"L{self.prefix}#{self.account}"


@dataclass(frozen=True)
class Message:
    """One DC-09 message before framing: token, sequence number, account, data, extended data."""
    token: str
    seq: int
    account: Account
    data: str = ""
    xdata: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.token not in MESSAGE_TOKENS:
            raise DC09Error(f"token {self.token!r} is not one of {MESSAGE_TOKENS}")
        if not SEQ_FIRST <= self.seq <= SEQ_LAST:
            raise DC09Error(f"sequence number {self.seq} is outside {SEQ_FIRST:04d}-{SEQ_LAST:04d}")
        if any(c in self.data for c in "[]") or not _XDATA_VALUE.fullmatch(self.data):
            raise DC09Error(f"message data {self.data!r} must be printable ASCII without [ or ]")
        for letter, value in self.xdata:
            if len(letter) != 1 or not letter.isupper():
                raise DC09Error(f"extended data field {letter!r} is not one upper-case letter")
            if any(c in value for c in "[]|") or not _XDATA_VALUE.fullmatch(value):
                raise DC09Error(f"extended data [{letter}...] must be printable ASCII without [, ] or |; "
                                "percent-encode a link")


def sia_dcs_data(account: str, code: str, area: int, zone: int) -> str:
    """SIA DCS data block: new event (N), area (ri), two-letter event code, zone: `#1234|Nri1/BA003`."""
    if not re.fullmatch(r"[A-Z]{2}", code):
        raise DC09Error(f"SIA DCS event code {code!r} is not two upper-case letters")
    if not 0 <= area <= 999 or not 0 <= zone <= 9999:
        raise DC09Error(f"area {area} or zone {zone} is out of range (0-999, 0-9999)")
    return f"#{account}|Nri{area}/{code}{zone:03d}"


def adm_cid_data(account: str, qualifier: int, event: int, area: int, zone: int) -> str:
    """Contact ID data block `#acct|QEEE GG ZZZ`: qualifier 1 new, 3 restore, 6 status."""
    if qualifier not in (1, 3, 6):
        raise DC09Error(f"Contact ID qualifier {qualifier} is not 1 (new), 3 (restore) or 6 (status)")
    if not 100 <= event <= 999 or not 0 <= area <= 99 or not 0 <= zone <= 999:
        raise DC09Error(f"Contact ID event {event}, partition {area} or zone {zone} is out of range")
    return f"#{account}|{qualifier}{event:03d} {area:02d} {zone:03d}"


def _cipher(key: bytes) -> Cipher:
    return Cipher(algorithms.AES(key), modes.CBC(ZERO_IV))


def _pad(length: int) -> str:
    return "".join(secrets.choice(PAD_ALPHABET) for _ in range(length))


def _frame(body: str) -> bytes:
    if len(body) > MAX_BODY:
        raise DC09Error(f"DC-09 message of {len(body)} characters is longer than {MAX_BODY}: "
                        "shorten the extended data")
    raw = body.encode("ascii")
    return b"\n" + f"{crc16(raw):04X}{len(raw):04X}".encode("ascii") + raw + b"\r"


def encode(message: Message, key: bytes | None, at: float, pad: str | None = None) -> bytes:
    """The bytes of `message` sent at unix time `at`, encrypted when `key` is given.

    `pad` fixes the pad characters (tests); by default they are drawn at random each time, so
    the same message sent again is a different ciphertext with the same sequence number.
    """
    check_key(key)
    plain = message.data + "]" + "".join(f"[{k}{v}]" for k, v in message.xdata) + format_timestamp(at)
    head = f'"{"*" if key else ""}{message.token}"{message.seq:04d}{message.account.ids()}['
    if key is None:
        return _frame(head + plain)
    n = 16 - (len(plain) + 1) % 16      # 1..16 pad characters; 16 when already whole blocks
    pad = _pad(n) if pad is None else pad
    if len(pad) != n or any(c in pad for c in "|[]"):
        raise DC09Error(f"pad must be {n} characters without |, [ or ]")
    enc = _cipher(key).encryptor()
    secret = enc.update((pad + "|" + plain).encode("ascii")) + enc.finalize()
    return _frame(head + secret.hex().upper())


@dataclass(frozen=True)
class Frame:
    """A decoded DC-09 line: a message or an answer."""
    token: str
    encrypted: bool
    seq: int
    receiver: str | None
    prefix: str | None
    account: str | None
    data: str
    xdata: tuple[tuple[str, str], ...]
    timestamp: float | None


def decode(raw: bytes, key: bytes | None = None) -> Frame:
    """The frame in `raw` (one line, LF ... CR). Raises `BadFrame` saying what is wrong."""
    check_key(key)
    try:
        text = bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise BadFrame(f"{len(raw)} bytes that are not ASCII: not a DC-09 line") from None
    text = text.strip("\r\n\x00")
    if len(text) < 10 or not _HEX.fullmatch(text[:8]):
        raise BadFrame(f"{_show(text)} does not start with a 4-digit hex CRC and a 4-digit length")
    crc, length, body = int(text[:4], 16), int(text[4:8], 16), text[8:]
    if length != len(body):
        raise BadFrame(f"length field says {length} characters but {len(body)} follow")
    if crc16(body.encode("ascii")) != crc:
        raise BadFrame(f"CRC {text[:4]} does not match the body (computed {crc16(body.encode('ascii')):04X})")
    head = _HEAD.match(body)
    if not head:
        raise BadFrame(f'body {_show(body)} does not start "token" seq R.. L.. #acct [')
    star, token, seq, ids = head.group(1), head.group(2), int(head.group(3)), head.group(4)
    fields = {letter: m.group(1) for letter, pattern in _ID_FIELDS.items() if (m := pattern.search(ids))}
    rest = body[head.end():]
    if star:
        rest = _decrypt(rest, key, token)
    data, xdata, when = _split_plain(rest)
    return Frame(token=token, encrypted=bool(star), seq=seq, receiver=fields.get("R"),
                 prefix=fields.get("L"), account=fields.get("#"),
                 data=data, xdata=xdata, timestamp=when)


def _decrypt(rest: str, key: bytes | None, token: str) -> str:
    if key is None:
        raise BadFrame(f"*{token} is encrypted and no key is configured for it")
    if not _HEX.fullmatch(rest) or len(rest) % 32:
        raise BadFrame(f"*{token}: the encrypted part is not whole AES blocks in hex")
    dec = _cipher(key).decryptor()
    plain = (dec.update(bytes.fromhex(rest)) + dec.finalize()).decode("latin-1")
    if "|" in plain:
        plain = plain.split("|", 1)[1]
    elif "]" in plain:
        # Some receivers (pysiaalarm among them) pad their encrypted ACK without the "|".
        # Then the pad runs up to the "]" that closes the (empty) data.
        plain = plain[plain.index("]"):]
    else:
        raise BadFrame(f"*{token} does not decrypt with the configured key: wrong key?")
    try:
        _split_plain(plain)
    except BadFrame:
        raise BadFrame(f"*{token} does not decrypt with the configured key to DC-09 data: wrong key?") from None
    return plain


def _split_plain(rest: str) -> tuple[str, tuple[tuple[str, str], ...], float | None]:
    end = rest.find("]")
    if end < 0:
        raise BadFrame(f"data {_show(rest)} has no closing ]")
    data, i = rest[:end], end + 1
    xdata = []
    while i < len(rest) and rest[i] == "[":
        close = rest.find("]", i)
        if close < 0 or close == i + 1:
            raise BadFrame(f"extended data {_show(rest[i:])} is empty or not closed")
        xdata.append((rest[i + 1], rest[i + 2:close]))
        i = close + 1
    when = None
    if i < len(rest):
        stamp = _TIMESTAMP.fullmatch(rest[i:])
        if not stamp:
            raise BadFrame(f"{_show(rest[i:])} after the data is not a _HH:MM:SS,MM-DD-YYYY timestamp")
        when = parse_timestamp(stamp.group(1))
    return data, tuple(xdata), when


def _show(text: str, limit: int = 40) -> str:
    """A piece of a line made safe to put in an error: printable, truncated."""
    cut = "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
    return repr(cut + ("..." if len(text) > limit else ""))


@dataclass(frozen=True)
class Answer:
    """What a receiver said to one message: ACK (or RSP), NAK, or DUH, and its clock if it sent it."""
    kind: str
    receiver_time: float | None
    frame: Frame

    @property
    def delivered(self) -> bool:
        return self.kind in (ACK, RSP)


def read_answer(raw: bytes, message: Message, key: bytes | None) -> Answer:
    """Judge `raw` as the receiver's answer to `message` (sent encrypted iff `key`).

    Raises `BadFrame` for a line that is not DC-09 or does not decrypt, and `BadAnswer` for a
    line that is not an answer to this message: another token, another sequence number or
    account, or a plain ACK to an encrypted message (DC-09: the ACK to an encrypted message is
    encrypted, which is how the sender knows the receiver holds the key).
    """
    frame = decode(raw, key)
    if frame.token not in ANSWER_TOKENS:
        raise BadAnswer(f"answer token {frame.token!r} is not one of {ANSWER_TOKENS}")
    if frame.token == NAK:
        return Answer(NAK, frame.timestamp, frame)
    if frame.seq != message.seq:
        raise BadAnswer(f"{frame.token} for sequence number {frame.seq:04d}, but {message.seq:04d} was sent")
    if frame.account is not None and frame.account.upper() != message.account.account.upper():
        raise BadAnswer(f"{frame.token} for account {frame.account}, but {message.account.account} was sent")
    if frame.token in (ACK, RSP) and key is not None and not frame.encrypted:
        raise BadAnswer(f"plain {frame.token} to an encrypted message: the receiver does not hold the key")
    return Answer(frame.token, frame.timestamp, frame)
