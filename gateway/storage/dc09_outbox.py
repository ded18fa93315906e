"""The DC-09 outbox's rows: reports waiting for an alarm receiver's ACK, one delivery row per route.

`gateway.forward.stored` turns these rows into the `Outbox` the transmitters use; the promises
(numbers that never change, leases, one ACK per route) are written down in
`gateway.forward.outbox.Outbox`. The tables (`gateway.storage.migrations`, step 6):
- `dc09_outbox`: one row per report. Its `id` never changes and is never reused (SQLite
  `AUTOINCREMENT`, a PostgreSQL identity), which is where the DC-09 sequence number comes from.
  `dedupe`, when given, is unique: the second report with the same key is not put.
- `dc09_deliveries`: one row per (route, report): attempts, when it is due again, who leases
  it until when, and once a receiver of the route acknowledged it, when and which.

Several gateway workers share these rows. A worker takes due rows with `lease`: one
transaction that reads them with a row lock that skips rows another worker holds (PostgreSQL
`FOR UPDATE SKIP LOCKED`; SQLite's `BEGIN IMMEDIATE` is one writer at a time anyway) and
writes its lease on them, so no other worker takes them until the lease runs out or an
outcome is written.
"""

from __future__ import annotations

from typing import Iterable

from gateway.storage.sqldb import Database

_ENTRY_COLUMNS = "o.id, o.dedupe, o.device, o.event, o.alarm_id, o.report, o.queued_at_ms"
# A report of an alarm waits while an earlier report of the same alarm (its alarm, before its
# verification follow-up or its cancel) is not acknowledged on the route: the ARC's software
# must never read "photos are there" or "cancelled" before the alarm itself.
_AFTER_ITS_ALARM = ("NOT EXISTS (SELECT 1 FROM dc09_deliveries e JOIN dc09_outbox p ON p.id = e.entry_id "
                    "WHERE e.route = d.route AND e.acked_at_ms IS NULL AND p.alarm_id = o.alarm_id "
                    "AND p.id < o.id)")


def _in(ids: list) -> str:
    return ",".join("?" * len(ids))


class Dc09Outbox:
    def __init__(self, db: Database):
        self.db = db

    @property
    def _skip_locked(self) -> str:
        # A row another worker has locked is left to it, not waited for (PostgreSQL only:
        # SQLite's BEGIN IMMEDIATE already holds the one write lock).
        return " FOR UPDATE OF d SKIP LOCKED" if self.db.engine == "postgresql" else ""

    # Reports ---------------------------------------------------------------------------------
    def put(self, report: str, device: str | None, event: str, alarm_id: str | None, queued_at_ms: int,
            routes: Iterable[str], dedupe: str | None = None, lease_until_ms: int = 0,
            owner: str | None = None) -> dict | None:
        """Add a report (`report` is its JSON) with a delivery row for each route; its row, or None
        if a report with the same `dedupe` key is there already.

        Given `owner`, every delivery row is born leased to it until `lease_until_ms`: the worker
        that stores an alarm sends it itself, without taking the lease in a transaction of its own.
        Runs in the caller's transaction when there is one (the ingest's: the report commits with
        the event that caused it), else in a transaction of its own."""
        args = (report, device, event, alarm_id, queued_at_ms, routes, dedupe, lease_until_ms if owner else 0, owner)
        if self.db.in_transaction:
            return self._put(*args)
        with self.db.transaction():
            return self._put(*args)

    def _put(self, report, device, event, alarm_id, queued_at_ms, routes, dedupe, lease_until_ms,
             owner) -> dict | None:
        row = self.db.execute(
            "INSERT INTO dc09_outbox (dedupe, device, event, alarm_id, report, queued_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING RETURNING id",
            (dedupe, device, event, alarm_id, report, queued_at_ms)).fetchone()
        if row is None:
            return None
        entry_id = row[0]
        routes = sorted(set(routes))
        if routes:
            self.db.executemany("INSERT INTO dc09_deliveries (entry_id, route, lease_until_ms, leased_by) "
                                "VALUES (?, ?, ?, ?)", [(entry_id, route, lease_until_ms, owner) for route in routes])
        return {"id": entry_id, "dedupe": dedupe, "device": device, "event": event, "alarm_id": alarm_id,
                "report": report, "queued_at_ms": queued_at_ms}

    def by_dedupe(self, dedupe: str) -> dict | None:
        row = self.db.execute(f"SELECT {_ENTRY_COLUMNS} FROM dc09_outbox o WHERE o.dedupe = ?",
                              (dedupe,)).fetchone()
        return dict(row) if row else None

    def entries(self) -> list[dict]:
        """Every report in the outbox, oldest first (inspection, tests)."""
        return [dict(r) for r in self.db.execute(f"SELECT {_ENTRY_COLUMNS} FROM dc09_outbox o ORDER BY o.id")]

    def deliveries(self, entry_id: int) -> dict[str, dict]:
        """route -> its delivery row for one report."""
        return {r["route"]: dict(r) for r in self.db.execute(
            "SELECT route, attempts, retry_at_ms, lease_until_ms, leased_by, last_outcome, acked_at_ms, acked_by "
            "FROM dc09_deliveries WHERE entry_id = ?", (entry_id,))}

    # Routes ----------------------------------------------------------------------------------
    def add_route(self, route: str) -> int:
        """Give a route a delivery row for every report still in flight (not acknowledged on every
        route it has, or with no route at all); how many it got. Reports that every route has
        acknowledged are history and are not sent to a route configured after them."""
        return self.db.execute(
            "INSERT INTO dc09_deliveries (entry_id, route) SELECT o.id, ? FROM dc09_outbox o "
            "WHERE NOT EXISTS (SELECT 1 FROM dc09_deliveries d WHERE d.entry_id = o.id AND d.route = ?) "
            "AND (NOT EXISTS (SELECT 1 FROM dc09_deliveries d WHERE d.entry_id = o.id) "
            "OR EXISTS (SELECT 1 FROM dc09_deliveries d WHERE d.entry_id = o.id AND d.acked_at_ms IS NULL)) "
            "ON CONFLICT (route, entry_id) DO NOTHING", (route, route)).rowcount

    # Delivery --------------------------------------------------------------------------------
    def lease(self, route: str, now_ms: int, limit: int, lease_until_ms: int, owner: str) -> list[dict]:
        """Take up to `limit` due, unleased, unacknowledged reports of `route`, oldest first, and
        lease them to `owner` until `lease_until_ms`. One transaction of its own.

        Each row: the report's columns with its delivery's `attempts` and `last_outcome`."""
        # A look without a lock first: a poll that finds nothing due takes no write lock (on
        # SQLite that would queue behind the ingest's batch for nothing).
        if self.db.execute("SELECT 1 FROM dc09_deliveries WHERE route = ? AND acked_at_ms IS NULL AND "
                           "retry_at_ms <= ? AND lease_until_ms <= ? LIMIT 1", (route, now_ms, now_ms)).fetchone() is None:
            return []
        with self.db.transaction(durable=False):   # a lease lost in a crash only runs out
            rows = [dict(r) for r in self.db.execute(
                f"SELECT {_ENTRY_COLUMNS}, d.attempts, d.last_outcome FROM dc09_deliveries d "
                "JOIN dc09_outbox o ON o.id = d.entry_id "
                "WHERE d.route = ? AND d.acked_at_ms IS NULL AND d.retry_at_ms <= ? AND d.lease_until_ms <= ? "
                f"AND (o.alarm_id IS NULL OR {_AFTER_ITS_ALARM}) "
                "ORDER BY d.entry_id LIMIT ?" + self._skip_locked, (route, now_ms, now_ms, limit)).fetchall()]
            if rows:
                ids = [r["id"] for r in rows]
                self.db.execute(f"UPDATE dc09_deliveries SET lease_until_ms = ?, leased_by = ? "
                                f"WHERE route = ? AND entry_id IN ({_in(ids)})", (lease_until_ms, owner, route, *ids))
        return rows

    def claimed(self, route: str, ids: list[int], now_ms: int, owner: str) -> list[dict]:
        """Of the reports `ids`, those whose delivery on `route` is leased to `owner` (`put` with
        `owner`), the lease still running and not yet acknowledged; oldest first, rows as `lease`
        gives them. A read, no lock: the lease was taken when the report was put, and a report
        whose transaction rolled back is simply not there."""
        if not ids:
            return []
        return [dict(r) for r in self.db.execute(
            f"SELECT {_ENTRY_COLUMNS}, d.attempts, d.last_outcome FROM dc09_deliveries d "
            "JOIN dc09_outbox o ON o.id = d.entry_id "
            f"WHERE d.route = ? AND d.entry_id IN ({_in(ids)}) AND d.acked_at_ms IS NULL AND d.leased_by = ? "
            "AND d.lease_until_ms > ? ORDER BY d.entry_id", (route, *ids, owner, now_ms)).fetchall()]

    def waits_for_its_alarm(self, route: str, entry_id: int) -> bool:
        """Whether an earlier report of the same alarm is not yet acknowledged on `route`."""
        return self.db.execute(
            "SELECT 1 FROM dc09_deliveries d JOIN dc09_outbox o ON o.id = d.entry_id "
            f"WHERE d.route = ? AND d.entry_id = ? AND o.alarm_id IS NOT NULL AND NOT {_AFTER_ITS_ALARM}",
            (route, entry_id)).fetchone() is not None

    def attempt(self, entry_id: int, route: str, outcome: str, retry_at_ms: int) -> None:
        """One failed try: counted, its reason kept, due again at `retry_at_ms`; the lease ends."""
        self.db.execute("UPDATE dc09_deliveries SET attempts = attempts + 1, last_outcome = ?, retry_at_ms = ?, "
                        "lease_until_ms = 0 WHERE route = ? AND entry_id = ? AND acked_at_ms IS NULL",
                        (outcome[:500], retry_at_ms, route, entry_id))

    def ack(self, entry_id: int, route: str, receiver: str, at_ms: int) -> bool:
        """A receiver of `route` acknowledged the report (the first ACK counts); False if it had been already."""
        return self.db.execute("UPDATE dc09_deliveries SET acked_at_ms = ?, acked_by = ?, lease_until_ms = 0 "
                               "WHERE route = ? AND entry_id = ? AND acked_at_ms IS NULL",
                               (at_ms, receiver, route, entry_id)).rowcount > 0

    def backlog(self, route: str) -> int:
        """Reports not yet acknowledged on `route`."""
        return self.db.execute("SELECT count(*) FROM dc09_deliveries WHERE route = ? AND acked_at_ms IS NULL",
                               (route,)).fetchone()[0]

    def restart(self, owner: str, routes: Iterable[str], now_ms: int) -> int:
        """A worker starts again: the leases it held end, and what waits on `routes` is due now."""
        routes = sorted(set(routes))
        n = self.db.execute("UPDATE dc09_deliveries SET lease_until_ms = 0 WHERE leased_by = ? "
                            "AND acked_at_ms IS NULL AND lease_until_ms > 0", (owner,)).rowcount
        if routes:
            self.db.execute(f"UPDATE dc09_deliveries SET retry_at_ms = ? WHERE route IN ({_in(routes)}) "
                            "AND acked_at_ms IS NULL AND retry_at_ms > ?", (now_ms, *routes, now_ms))
        return n

    def purge(self, acked_before_ms: int, limit: int = 1000) -> int:
        """Drop reports every route of which acknowledged before `acked_before_ms`; how many."""
        with self.db.transaction(durable=False):
            ids = [r[0] for r in self.db.execute(
                "SELECT entry_id FROM dc09_deliveries GROUP BY entry_id "
                "HAVING count(acked_at_ms) = count(*) AND max(acked_at_ms) < ? LIMIT ?",
                (acked_before_ms, limit)).fetchall()]
            if ids:
                self.db.execute(f"DELETE FROM dc09_deliveries WHERE entry_id IN ({_in(ids)})", ids)
                self.db.execute(f"DELETE FROM dc09_outbox WHERE id IN ({_in(ids)})", ids)
        return len(ids)
