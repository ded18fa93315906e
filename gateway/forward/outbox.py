"""The outbox: reports waiting for a receiver's ACK, and what a durable outbox must promise.

A report is put in the outbox before anything is sent, and it leaves only when a receiver of
each route (receiver pair) has acknowledged it. The transmitters take their work from here
and nowhere else, so a receiver that is down, refuses or NAKs loses nothing, and a restart
resends what was not acknowledged, with the sequence number it was given when it was put.

`Outbox` is the interface. `MemoryOutbox` keeps it in memory (tests, the demo); `FileOutbox`
adds a JSON-lines journal with fsync, enough for one gateway process. `StoredOutbox`
(`gateway.forward.stored`) keeps it in the gateway's database, SQLite or PostgreSQL, and is
what a running gateway uses; the notes on each method say what it must guarantee, including
for several gateway workers on one database.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

from gateway.forward.dc09 import SEQ_LAST, next_seq


@dataclass(frozen=True)
class Report:
    """One event to forward, as the ARC's receiver will know it. Holds no key.

    `event` is a Vericam event code (a key of `gateway.forward.codes.CODES`); `account`,
    `prefix` and `receiver` are the DC-09 account, account prefix (L) and receiver number (R)
    the panel itself reports under; `area` and `zone` place the event at the site; `link` is the
    verification address sent as `[V...]` (the alarm's console page); `follow_up` marks the
    report that photos are now there for an alarm already reported.
    """
    event: str
    account: str
    prefix: str = "0"
    receiver: str | None = None
    area: int = 1
    zone: int = 1
    link: str | None = None
    follow_up: bool = False
    alarm_id: str | None = None
    device: str | None = None
    at: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "Report":
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj})


@dataclass(frozen=True)
class Entry:
    """A report in the outbox: its id, its DC-09 sequence number, when it was queued.

    `attempts` and `last_outcome` are those of the route that asked (`Outbox.pending`).
    `leased` is True on the entry `put(..., lease_s=...)` returns when it put a new report
    leased to the caller on every route.
    """
    id: str
    seq: int
    report: Report
    queued_at: float
    attempts: int = 0
    last_outcome: str | None = None
    leased: bool = False


@runtime_checkable
class Outbox(Protocol):
    """What the transmitters need from the queue, and what every implementation promises.

    - `put(report, now, key)`: the report is durable when this returns (an alarm must survive a
      crash right after it), or, put inside a transaction of the caller's, when that commits.
      It gets an id and a sequence number 0001-9999, the next after the last one given (9999
      wraps to 0001; a database outbox may skip the numbers of transactions that rolled back);
      the number never changes, so every resend, to any receiver, after any restart, carries
      the same one. Given a `key`, a report whose key is already in the outbox is not put
      again: the entry already there is returned (one verification follow-up per alarm,
      however many of its captures are stored, by however many workers). Given `lease_s`, an
      outbox that can (`StoredOutbox`) puts a new report already leased to the caller on every
      route until `now + lease_s`, and says so (`Entry.leased`): the caller hands it straight to
      its transmitters (`claimed`), and `pending` leaves it to them. Others ignore `lease_s`.
    - `pending(route, now, limit, lease_s)`: entries not yet acknowledged on `route` whose
      retry time has come, oldest first, at most `limit`. Each entry returned is leased to the
      caller until `now + lease_s`: no other call of `pending` for that route returns it before
      then, unless the lease holder records an outcome first. With several gateway workers on
      one database this is what makes each alarm go out once per route (a database outbox takes
      the rows with a row lock that skips rows locked by another worker, and writes the lease).
      A report of an alarm is not due while an earlier report of the same alarm (`alarm_id`) is
      not acknowledged on the route: a follow-up or a cancel never overtakes its alarm, also
      when the alarm was refused and waits longer for its next try.
    - `waits_for_its_alarm(entry_id, route)`: that condition, for an entry handed straight to
      a transmitter (which then leaves it for `pending`).
    - `mark_attempt(entry_id, route, outcome, retry_at)`: one delivery attempt on `route`
      failed; `outcome` is the reason (short text, never a key); the entry is due again at
      `retry_at`, and its lease ends.
    - `mark_acked(entry_id, route, receiver, at)`: a receiver of `route` acknowledged it; it is
      never returned by `pending(route)` again. Durable before it returns; if it is lost, the
      entry is sent once more with the same sequence number, which the receiver drops.
    - `backlog(route)`: how many entries are not yet acknowledged on `route` (a metric).
    """

    def put(self, report: Report, now: float | None = None, key: str | None = None,
            lease_s: float | None = None) -> Entry: ...

    def pending(self, route: str, now: float, limit: int = 20, lease_s: float = 60.0) -> list[Entry]: ...

    def waits_for_its_alarm(self, entry_id: str, route: str) -> bool: ...

    def mark_attempt(self, entry_id: str, route: str, outcome: str, retry_at: float) -> None: ...

    def mark_acked(self, entry_id: str, route: str, receiver: str, at: float) -> None: ...

    def backlog(self, route: str) -> int: ...


@dataclass
class _RouteState:
    attempts: int = 0
    retry_at: float = 0.0
    lease_until: float = 0.0
    last_outcome: str | None = None
    acked_at: float | None = None
    acked_by: str | None = None


@dataclass
class _Item:
    entry: Entry
    routes: dict[str, _RouteState] = field(default_factory=dict)

    def state(self, route: str) -> _RouteState:
        if route not in self.routes:
            self.routes[route] = _RouteState()
        return self.routes[route]


class MemoryOutbox:
    """The outbox in memory: everything `Outbox` promises except surviving a restart."""

    def __init__(self, first_seq: int = 1):
        self._lock = threading.Lock()
        self._items: dict[str, _Item] = {}     # insertion order is queue order
        self._keys: dict[str, str] = {}        # put(key=...) -> the id of the entry put with it
        self._last_seq = (first_seq - 2) % SEQ_LAST + 1   # next_seq(_last_seq) == first_seq

    # -- Outbox -------------------------------------------------------------------------------
    def put(self, report: Report, now: float | None = None, key: str | None = None,
            lease_s: float | None = None) -> Entry:
        with self._lock:     # lease_s: not here; the entry is found by `pending`, which is in memory anyway
            if key is not None and self._keys.get(key) in self._items:
                return self._items[self._keys[key]].entry
            entry = Entry(id=secrets.token_hex(8), seq=next_seq(self._last_seq), report=report,
                          queued_at=time.time() if now is None else now)
            self._journal_put(entry, key)
            self._last_seq = entry.seq
            self._items[entry.id] = _Item(entry)
            if key is not None:
                self._keys[key] = entry.id
            return entry

    def pending(self, route: str, now: float, limit: int = 20, lease_s: float = 60.0) -> list[Entry]:
        out = []
        with self._lock:
            unacked_alarms = set()     # alarms with a report before this one not acknowledged on the route
            for item in self._items.values():
                st = item.state(route)
                alarm = item.entry.report.alarm_id
                if st.acked_at is None and alarm is not None:
                    if alarm in unacked_alarms:
                        continue       # after its alarm's earlier report (`Outbox.waits_for_its_alarm`)
                    unacked_alarms.add(alarm)
                if st.acked_at is not None or st.retry_at > now or st.lease_until > now:
                    continue
                st.lease_until = now + lease_s
                out.append(replace(item.entry, attempts=st.attempts, last_outcome=st.last_outcome))
                if len(out) >= limit:
                    break
        return out

    def waits_for_its_alarm(self, entry_id: str, route: str) -> bool:
        with self._lock:
            item = self._items.get(entry_id)
            alarm = item.entry.report.alarm_id if item else None
            if alarm is None:
                return False
            for other in self._items.values():
                if other is item:
                    return False
                if other.entry.report.alarm_id == alarm and other.state(route).acked_at is None:
                    return True
            return False

    def mark_attempt(self, entry_id: str, route: str, outcome: str, retry_at: float) -> None:
        with self._lock:
            item = self._items.get(entry_id)
            if item is None:
                return
            self._journal({"op": "try", "id": entry_id, "route": route, "outcome": outcome,
                           "retry_at": retry_at}, sync=False)
            self._apply_attempt(item, route, outcome, retry_at)

    def mark_acked(self, entry_id: str, route: str, receiver: str, at: float) -> None:
        with self._lock:
            item = self._items.get(entry_id)
            if item is None:
                return
            self._journal({"op": "ack", "id": entry_id, "route": route, "receiver": receiver, "at": at}, sync=True)
            self._apply_ack(item, route, receiver, at)

    def backlog(self, route: str) -> int:
        with self._lock:
            return sum(1 for item in self._items.values() if item.state(route).acked_at is None)

    # -- looking in (tests, the bench, an operator's status line) ------------------------------
    def entries(self) -> list[Entry]:
        with self._lock:
            return [item.entry for item in self._items.values()]

    def acked_by(self, entry_id: str, route: str) -> str | None:
        """The receiver that acknowledged the entry on `route`, or None."""
        with self._lock:
            item = self._items.get(entry_id)
            return None if item is None else item.state(route).acked_by

    def attempts(self, entry_id: str, route: str) -> int:
        with self._lock:
            item = self._items.get(entry_id)
            return 0 if item is None else item.state(route).attempts

    # -- state changes, shared with the journal replay ------------------------------------------
    @staticmethod
    def _apply_attempt(item: _Item, route: str, outcome: str, retry_at: float) -> None:
        st = item.state(route)
        st.attempts += 1
        st.last_outcome = outcome
        st.retry_at = retry_at
        st.lease_until = 0.0

    @staticmethod
    def _apply_ack(item: _Item, route: str, receiver: str, at: float) -> None:
        st = item.state(route)
        st.acked_at, st.acked_by, st.lease_until = at, receiver, 0.0

    def _journal_put(self, entry: Entry, key: str | None = None) -> None:
        """Hook for a durable subclass: record the new entry before it exists in memory."""

    def _journal(self, record: dict, sync: bool) -> None:
        """Hook for a durable subclass: record a state change before it is applied."""


class FileOutbox(MemoryOutbox):
    """The outbox with a JSON-lines journal: every put and ack is fsynced before it counts.

    One line per change: `put` (the entry), `ack` (route, receiver), `try` (an attempt that
    failed; flushed, not fsynced: losing one only resets a backoff). Opening replays the
    journal; a torn last line (a crash mid-write) is ignored, since its change never counted.
    Given `routes`, opening also compacts: entries acknowledged on all of them are dropped and
    the journal is rewritten (to a temporary file, fsynced, renamed over the old one).
    Leases are kept in memory: this outbox is for one gateway process.
    """

    def __init__(self, path: str | Path, routes: Iterable[str] | None = None):
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._replay()
        if routes is not None:
            self._compact(tuple(routes))
        self._file = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def _replay(self) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
            except ValueError:
                if n == len(lines):
                    break            # torn last line: its change never counted
                raise ValueError(f"{self.path}:{n}: outbox journal line is not JSON; "
                                 "the file is damaged, restore it from a backup") from None
            op = rec.get("op")
            if op == "seq":
                self._last_seq = rec["seq"]
            elif op == "put":
                entry = Entry(id=rec["id"], seq=rec["seq"], report=Report.from_json(rec["report"]),
                              queued_at=rec["queued_at"])
                self._items[entry.id] = _Item(entry)
                self._last_seq = entry.seq
                if rec.get("key") is not None:
                    self._keys[rec["key"]] = entry.id
            elif op in ("ack", "try") and rec.get("id") in self._items:
                item = self._items[rec["id"]]
                if op == "ack":
                    self._apply_ack(item, rec["route"], rec["receiver"], rec["at"])
                else:
                    self._apply_attempt(item, rec["route"], rec["outcome"], rec["retry_at"])
        for item in self._items.values():     # after a restart, everything unacked is due now
            for st in item.routes.values():
                st.retry_at = 0.0

    def _compact(self, routes: tuple[str, ...]) -> None:
        keep = {eid: item for eid, item in self._items.items()
                if not routes or any(item.state(r).acked_at is None for r in routes)}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"op": "seq", "seq": self._last_seq}) + "\n")
            keys = {eid: key for key, eid in self._keys.items()}
            for item in keep.values():
                f.write(json.dumps(self._put_record(item.entry, keys.get(item.entry.id))) + "\n")
                for route, st in item.routes.items():
                    if st.acked_at is not None:
                        f.write(json.dumps({"op": "ack", "id": item.entry.id, "route": route,
                                            "receiver": st.acked_by, "at": st.acked_at}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._items = keep
        self._keys = {key: eid for key, eid in self._keys.items() if eid in keep}

    @staticmethod
    def _put_record(entry: Entry, key: str | None = None) -> dict:
        record = {"op": "put", "id": entry.id, "seq": entry.seq, "queued_at": entry.queued_at,
                  "report": entry.report.to_json()}
        if key is not None:
            record["key"] = key
        return record

    def _journal_put(self, entry: Entry, key: str | None = None) -> None:
        self._journal(self._put_record(entry, key), sync=True)

    def _journal(self, record: dict, sync: bool) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
