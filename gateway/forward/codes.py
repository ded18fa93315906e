"""Which SIA DCS code and which Contact ID code each Vericam event is reported under.

The table is `CODES`: one row per Vericam event code, as the device sends it in an alarm
event (`docs/PROTOCOL.md` section 6, the capture triggers) or as the gateway raises it
(supervision). A receiver pair is configured for one format, SIA DCS or Contact ID, as the
ARC's receiver expects; the same row gives both.

| Vericam event          | SIA DCS | Contact ID | what the ARC software shows                          |
|------------------------|---------|------------|------------------------------------------------------|
| `intrusion`            | BA      | E130       | burglary alarm                                       |
| `smoke`                | FA      | E111       | fire alarm (smoke detector)                          |
| `fire`                 | FA      | E110       | fire alarm                                           |
| `duress`               | HA      | E121       | hold-up alarm: user under duress (silent)            |
| `panic`                | PA      | E120       | panic alarm                                          |
| `sos`                  | QA      | E101       | emergency: personal emergency (SOS button)           |
| `silent`               | HA      | E122       | silent hold-up alarm: the wall unit was removed      |
| `tamper`               | TA      | E137       | tamper alarm (enclosure opened / removed)            |
| `supervision_lost`     | EM      | E381       | device missing: loss of supervision                  |
| `supervision_restored` | EN      | R381       | device heard again: supervision restored             |
| `flash_full`           | ET      | E333       | device trouble: the detector cannot store photos     |
| `alarm_cancelled`      | BC      | E406       | alarm cancelled by a user                            |
| `power_loss`           | TA      | E137       | tamper: power cut or reset inside a disarm's hold window |
| `key_slots_exhausted`  | ET      | E333       | device trouble: no key slot free, photos not kept    |
| `key_slot_lost`        | YX      | E330       | service required: a capture's photos were lost       |

Not forwarded (`NOT_FORWARDED`, with the reason for each): the gateway's own refusals
`counter_conflict`, `counter_jump` and `rate_limited`.

Why these, and what was weighed:
- Duress and the removed wall unit are both silent hold-up alarms (SIA DCS has one code for
  them, HA); Contact ID tells them apart (121 duress, 122 silent panic), and the zone does in
  SIA DCS. Panic (PA/120) is the audible, deliberate button; SOS is the resident asking for
  help (QA/101, personal emergency), which ARCs handle as a care call, not a burglary.
- Tamper is TA/137, the code a panel uses for its own tamper, not 383 (sensor tamper), because
  the camera detector is a first-class part of the panel system and ARC software treats TA/137
  as an alarm, 383 often only as a trouble.
- Supervision of a device that has gone quiet is EM/EN (expansion device missing / restored) with
  Contact ID 381 (loss of supervision) and its restoral R381 (qualifier 3).
- A full flash is a device trouble that stops verification photos: ET with 333 (expansion module
  failure), which Contact ID receivers map back to ET.
- The alarm pairs map onto themselves through the usual Contact ID to SIA conversion tables (a
  receiver that converts CID 130 shows BA, 111 FA, 121 and 122 HA, 120 PA, 101 QA, 137 TA, 333
  ET); 381 comes out as a communication failure (YC/YK) there, which is what it is.

- `power_loss` is the alarm a device raises at boot when a reboot or power cut fell inside the
  hold window of a disarm (firmware/vericam/policy.py): the design's "disarm, then sabotage".
  It is reported as tamper, TA/137, not as AC loss (AT/301): the device learns of it only at
  the boot after the cut, so the power is back by then and an AT would stand open at the ARC
  with no restoral to follow; the cut may have been a reset or a pulled cable, not a mains
  failure; and ARC software treats AT/301 as a delayed low-priority trouble (panels hold AC
  loss back for minutes or hours) where this is an alarm with photos, sent at once and
  followed by the verification link like any other alarm. The price is that the ARC's
  software shows it as a tamper; the alarm's page behind the link says which.
- `key_slots_exhausted`: no key slot was free for a new capture, so it was not taken, or
  the oldest held capture gave its slot up. Either way the detector could not keep photos:
  the same trouble, for the ARC, as `flash_full`, hence the same ET/333.
- `key_slot_lost`: a capture on the detector can never be opened (its key slot is gone or
  corrupt) and was removed; if an alarm claimed it, that alarm's photos will not come. The
  ARC operator waiting for them must know, and the detector's flash needs a look: YX (service
  required) with 330 (system peripheral trouble), the pair a converting receiver maps onto each
  other. It is raised once per lost capture, at boot.
- The gateway's refusals (`counter_conflict`, `counter_jump`, `rate_limited`) are not
  forwarded. They are about messages the gateway refused, raised once a minute for as long
  as the refusals last, with no restoral: as DC-09 troubles they would fill the ARC's screen
  with events it cannot act on at the premises. What they mean for the alarm path does reach
  the ARC: a refused message does not count as hearing from the device, so a device whose
  messages are all refused (its counter went back, or leaps) falls silent to the gateway and
  is reported as `supervision_lost` (EM/381). The refusals themselves are the gateway
  operator's: the device's activity log, the console, the log and the metrics.

Verification follow-up. When the photos of an alarm are stored, the gateway reports the alarm
once more with the verification field `[V<link>]`: in Contact ID with qualifier 6 ("previously
reported condition still present", a status report, not a new alarm), in SIA DCS, which has no
such qualifier, with the alarm's own code and zone. ARC software matches it to the open alarm by
account, zone and code; an integrator who wants SIA DCS receivers to treat it as a note rather
than an alarm configures that code-with-verification there, or uses Contact ID.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.forward import dc09


@dataclass(frozen=True)
class Code:
    """How one Vericam event goes out: SIA DCS code, Contact ID event and qualifier, meaning."""
    sia: str
    cid: int
    restore: bool
    meaning: str

    @property
    def cid_text(self) -> str:
        return f"{'R' if self.restore else 'E'}{self.cid:03d}"


CODES: dict[str, Code] = {
    "intrusion": Code("BA", 130, False, "burglary alarm"),
    "smoke": Code("FA", 111, False, "fire alarm (smoke detector)"),
    "fire": Code("FA", 110, False, "fire alarm"),
    "duress": Code("HA", 121, False, "hold-up alarm: user under duress"),
    "panic": Code("PA", 120, False, "panic alarm"),
    "sos": Code("QA", 101, False, "personal emergency (SOS)"),
    "silent": Code("HA", 122, False, "silent hold-up alarm: wall unit removed"),
    "tamper": Code("TA", 137, False, "tamper alarm"),
    "supervision_lost": Code("EM", 381, False, "device missing: loss of supervision"),
    "supervision_restored": Code("EN", 381, True, "device heard again: supervision restored"),
    "flash_full": Code("ET", 333, False, "device trouble: cannot store photos"),
    "alarm_cancelled": Code("BC", 406, False, "alarm cancelled by a user"),
    "power_loss": Code("TA", 137, False, "tamper: power cut or reset inside a disarm's hold window"),
    "key_slots_exhausted": Code("ET", 333, False, "device trouble: no key slot free, photos not kept"),
    "key_slot_lost": Code("YX", 330, False, "service required: a capture's photos were lost"),
}

# Technical events deliberately kept from the ARC's receivers (see the module docstring).
NOT_FORWARDED: dict[str, str] = {
    "counter_conflict": "a gateway refusal, repeated each minute; a device whose messages are all refused "
                        "is reported as supervision_lost",
    "counter_jump": "a gateway refusal, repeated each minute; a device whose messages are all refused "
                    "is reported as supervision_lost",
    "rate_limited": "a gateway refusal, repeated each minute; a flood must not become a flood at the ARC",
}

FORMATS = (dc09.SIA_DCS, dc09.ADM_CID)
CID_NEW, CID_RESTORE, CID_STATUS = 1, 3, 6


class UnmappedEvent(KeyError):
    """A Vericam event with no row in `CODES`: it is not forwarded."""


def code_for(event: str) -> Code:
    try:
        return CODES[event]
    except KeyError:
        raise UnmappedEvent(f"Vericam event {event!r} has no DC-09 code; forwarded events: "
                            f"{', '.join(CODES)}") from None


def event_data(fmt: str, account: str, event: str, area: int, zone: int, follow_up: bool = False) -> str:
    """The DC-09 data block for `event` in `fmt` (SIA-DCS or ADM-CID).

    `follow_up` marks the verification follow-up (see the module docstring): Contact ID
    qualifier 6 instead of 1 or 3.
    """
    code = code_for(event)
    if fmt == dc09.SIA_DCS:
        return dc09.sia_dcs_data(account, code.sia, area, zone)
    if fmt == dc09.ADM_CID:
        qualifier = CID_STATUS if follow_up else (CID_RESTORE if code.restore else CID_NEW)
        return dc09.adm_cid_data(account, qualifier, code.cid, area, zone)
    raise dc09.DC09Error(f"report format {fmt!r} is not one of {FORMATS}")
