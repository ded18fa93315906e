"""Each device's DC-09 account: the account, prefix and receiver number its panel reports under.

One row per device that the ARC's alarm receiver should hear about (`dc09_accounts`,
`gateway.storage.migrations` step 6): `account` (3-16 hex digits), `prefix` (the account prefix,
L), `receiver` (the receiver number, R, or NULL), the panel's `area` (partition) and the `zone`
the camera detector is installed as. The rules for the values are `gateway.forward.forwarder.Site`;
setting one is audited by `gateway.provisioning.dc09`.
"""

from __future__ import annotations

from gateway.storage.sqldb import Database

COLUMNS = ("account", "prefix", "receiver", "area", "zone")


class Dc09Accounts:
    def __init__(self, db: Database):
        self.db = db

    def set(self, device: str, account: str, prefix: str, receiver: str | None, area: int, zone: int,
            at_ms: int) -> None:
        self.db.execute(
            "INSERT INTO dc09_accounts (device, account, prefix, receiver, area, zone, updated_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET account = excluded.account, "
            "prefix = excluded.prefix, receiver = excluded.receiver, area = excluded.area, zone = excluded.zone, "
            "updated_at_ms = excluded.updated_at_ms", (device, account, prefix, receiver, area, zone, at_ms))

    def get(self, device: str) -> dict | None:
        """account, prefix, receiver, area, zone of the device, or None if it has none."""
        row = self.db.execute("SELECT account, prefix, receiver, area, zone FROM dc09_accounts WHERE device = ?",
                              (device,)).fetchone()
        return dict(row) if row else None

    def remove(self, device: str) -> bool:
        """The device is no longer reported over DC-09; False if it was not."""
        return self.db.execute("DELETE FROM dc09_accounts WHERE device = ?", (device,)).rowcount > 0

    def list(self) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT device, account, prefix, receiver, area, zone, updated_at_ms FROM dc09_accounts ORDER BY device")]
