"""The outbox in the gateway's database: durable, and shared by every gateway worker on it.

`StoredOutbox` keeps the promises of `gateway.forward.outbox.Outbox` in the rows of
`gateway.storage.dc09_outbox` (SQLite or PostgreSQL, wherever the gateway keeps its metadata).
A running gateway has two of them over the same tables:

- the ingest's (`StoredOutbox(store.dc09_outbox, routes)`), on the ingest's own connection:
  `put` writes a report inside the transaction that stores the event it reports, so the two
  commit together or not at all (a crash between them can lose neither the event nor its
  report), and the broker's PUBACK, sent after that commit, means "stored and queued";
- the transmitters' (`StoredOutbox.open(target, routes, owner)`), on a connection of its own
  that its threads take turns on: `pending`, `claimed`, `mark_attempt`, `mark_acked`, `backlog`.

The alarm does not wait for a lease. The ingest puts its report with `lease_s` (same `owner`
as the transmitters): its delivery rows are born leased to this worker, in the transaction
that stores the event, and once that commits the forwarder hands the entry's id straight to
the transmitters, which read it back with `claimed` (a read, no write lock to queue for behind
the ingest's next batch) and send it. The outbox stays the record: the report is there before
it is sent, its ACK is written to it, and if the worker dies first, the lease ends (at its
restart at once, for another worker when it runs out) and the report goes out with its number.

Several workers: each report has one delivery row per route, and `pending` leases due rows
with a row lock that skips rows another worker has locked (PostgreSQL) or under SQLite's one
write lock, so each report goes out once per route, whichever worker takes it. A worker's
leases carry its `owner` name (the gateway's stable MQTT client id), so a worker that restarts
after a crash takes back at once what it held, instead of waiting for its leases to run out.

The DC-09 sequence number of a report is its row id brought into 0001-9999: it never changes
and rows are never renumbered, so a resend after any restart carries the number it had.
Reports that every route acknowledged are dropped `keep_acked_s` later (a day by default).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from gateway.forward.dc09 import SEQ_LAST
from gateway.forward.outbox import Entry, Report
from gateway.storage import sqldb
from gateway.storage.dc09_outbox import Dc09Outbox

KEEP_ACKED_S = 24 * 3600.0      # how long a report every route acknowledged stays for inspection
PURGE_EVERY_S = 600.0


def seq_of(row_id: int) -> int:
    """The DC-09 sequence number of the report in row `row_id`: 1..9999, then 1 again."""
    return (int(row_id) - 1) % SEQ_LAST + 1


def _ms(t: float) -> int:
    return int(round(t * 1000))


class StoredOutbox:
    """`Outbox` over the `dc09_outbox` and `dc09_deliveries` rows (see the module docstring).

    `routes` are the routes of this gateway: `put` gives each a delivery row, and a route first
    asked about gets a delivery row for every report still in flight (not history that every
    other route has acknowledged). `owner` names this worker on its leases.
    """

    def __init__(self, rows: Dc09Outbox, routes: Iterable[str] = (), owner: str | None = None,
                 keep_acked_s: float | None = KEEP_ACKED_S):
        self.rows = rows
        self.routes = tuple(dict.fromkeys(routes))
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}"
        self.keep_acked_s = keep_acked_s
        self._lock = threading.RLock()    # one connection: the transmitters' threads take turns
        self._seen: set[str] = set()
        self._next_purge = 0.0
        self._db: sqldb.Database | None = None

    @classmethod
    def open(cls, target: str | Path, routes: Iterable[str], owner: str | None = None,
             keep_acked_s: float | None = KEEP_ACKED_S) -> "StoredOutbox":
        """On a connection of its own to the database at `target` (a `postgresql://` URL or a
        SQLite path; `Store.db_target`), whose schema `Store.open` has brought up to date."""
        db = sqldb.connect(target)
        box = cls(Dc09Outbox(db), routes, owner, keep_acked_s)
        box._db = db
        return box

    def start(self, now: float | None = None) -> "StoredOutbox":
        """A gateway (re)starts: each route gets what is in flight, the leases this owner held
        end, and what waits for a retry on these routes is due now."""
        now = time.time() if now is None else now
        with self._lock:
            for route in self.routes:
                self._ensure(route)
            self.rows.restart(self.owner, self.routes, _ms(now))
        return self

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- Outbox -------------------------------------------------------------------------------
    def put(self, report: Report, now: float | None = None, key: str | None = None,
            lease_s: float | None = None) -> Entry:
        queued_at = time.time() if now is None else now
        text = json.dumps(report.to_json(), separators=(",", ":"))
        owner = self.owner if lease_s else None
        with self._lock:
            row = self.rows.put(text, report.device, report.event, report.alarm_id, _ms(queued_at),
                                self.routes, dedupe=key, lease_until_ms=_ms(queued_at + (lease_s or 0)), owner=owner)
            if row is None:                      # put with this key already: that entry, not ours to send
                return self._entry(self.rows.by_dedupe(key))
        return replace(self._entry(row), leased=owner is not None and bool(self.routes))

    def claimed(self, route: str, entry_ids: Iterable[str], now: float) -> list[Entry]:
        """The entries among `entry_ids` put leased to this owner (`put(..., lease_s)`) whose lease
        on `route` still runs and which no receiver of it acknowledged yet, oldest first."""
        ids = sorted({int(i) for i in entry_ids})
        with self._lock:
            self._ensure(route)
            rows = self.rows.claimed(route, ids, _ms(now), self.owner)
        return [self._entry(r) for r in rows]

    def pending(self, route: str, now: float, limit: int = 20, lease_s: float = 60.0) -> list[Entry]:
        with self._lock:
            self._ensure(route)
            rows = self.rows.lease(route, _ms(now), limit, _ms(now + lease_s), self.owner)
            if self.keep_acked_s is not None and now >= self._next_purge:
                self._next_purge = now + PURGE_EVERY_S
                self.rows.purge(_ms(now - self.keep_acked_s))
        return [self._entry(r) for r in rows]

    def waits_for_its_alarm(self, entry_id: str, route: str) -> bool:
        with self._lock:
            return self.rows.waits_for_its_alarm(route, int(entry_id))

    def mark_attempt(self, entry_id: str, route: str, outcome: str, retry_at: float) -> None:
        with self._lock:
            self.rows.attempt(int(entry_id), route, outcome, _ms(retry_at))

    def mark_acked(self, entry_id: str, route: str, receiver: str, at: float) -> None:
        with self._lock:
            self.rows.ack(int(entry_id), route, receiver, _ms(at))

    def backlog(self, route: str) -> int:
        with self._lock:
            self._ensure(route)
            return self.rows.backlog(route)

    # -- looking in (tests, the bench, an operator's status line) ------------------------------
    def entries(self) -> list[Entry]:
        with self._lock:
            return [self._entry(r) for r in self.rows.entries()]

    def acked_by(self, entry_id: str, route: str) -> str | None:
        """The receiver that acknowledged the entry on `route`, or None."""
        with self._lock:
            return self.rows.deliveries(int(entry_id)).get(route, {}).get("acked_by")

    def attempts(self, entry_id: str, route: str) -> int:
        with self._lock:
            return self.rows.deliveries(int(entry_id)).get(route, {}).get("attempts", 0)

    # -- rows to entries ----------------------------------------------------------------------
    def _ensure(self, route: str) -> None:
        if route not in self._seen:
            self.rows.add_route(route)
            self._seen.add(route)

    @staticmethod
    def _entry(row: dict) -> Entry:
        return Entry(id=str(row["id"]), seq=seq_of(row["id"]), report=Report.from_json(json.loads(row["report"])),
                     queued_at=row["queued_at_ms"] / 1000, attempts=row.get("attempts") or 0,
                     last_outcome=row.get("last_outcome"))
