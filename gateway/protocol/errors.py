"""Errors of the wire protocol: every rejection is one exception carrying its `reason` label.

The labels are the ones PROTOCOL.md §3 names (and a few for captures and reassembly). The
gateway counts rejections by `reason`; the message text says what happened and what to do, and
never contains payload bytes or key material.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A message that the protocol says to reject. `reason` is the counting label.

    `notice`, when set, is the code of a technical event the gateway raises for `device`
    (at most once a minute, gateway.ingest.notices): a refusal an operator must hear of.
    `quiet`: not logged one line per message (a flood would fill the log); its notice says
    how many there were."""

    reason = "malformed"
    notice: str | None = None
    quiet = False

    def __init__(self, message: str, reason: str | None = None, device: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.device = device


class Malformed(ProtocolError):
    reason = "malformed"


class TopicMismatch(ProtocolError):
    reason = "topic_mismatch"


class UnknownDevice(ProtocolError):
    reason = "unknown_device"


class BadMac(ProtocolError):
    reason = "bad_mac"


class Replay(ProtocolError):
    reason = "replay"


class CounterBehind(Replay):
    """An authentic, current message whose counter is far below the device's high-water mark.

    Counted as a `replay` like any other, but it is what a device sees once another holder of
    its key has pushed its counter ahead, or once it lost its own counter (§3 "Counters")."""

    notice = "counter_conflict"


class CounterJump(ProtocolError):
    """A counter further above the device's highest than §3 allows (`counter_jump`)."""

    reason = "counter_jump"
    notice = "counter_jump"


class Stale(ProtocolError):
    reason = "stale"


class BadCapture(ProtocolError):
    """A sealed capture that does not open: header MAC, frame tag or end record wrong."""

    reason = "bad_capture"


class WrongArcKey(ProtocolError):
    """A capture sealed to another ARC public key than the one this gateway holds."""

    reason = "wrong_arc_key"


class CaptureTooLarge(ProtocolError):
    """A capture over the §5 limits (1024 chunks, 4 MiB)."""

    reason = "capture_too_large"


class TooManyCaptures(ProtocolError):
    """A device with more captures in reassembly than §5 allows (4)."""

    reason = "too_many_captures"


class RateLimited(ProtocolError):
    """An authentic message over its device's quota (§5; gateway.ingest.quotas)."""

    reason = "rate_limited"
    notice = "rate_limited"
    quiet = True


class BadEvent(ProtocolError):
    """An authentic event whose body does not decrypt to a JSON object."""

    reason = "bad_event"
