"""Who may do what in the console: the one role table every route checks.

    page / API                      operator  supervisor  auditor  admin
    alarm queue, alarm, photos         x          x
    acknowledge / close alarm          x          x
    police hold / release / export                x
    devices                            x          x                  x
    activity log                       x          x                  x
    users                                                            x
    audit trail                                               x

The role is re-read from the users table on every request (`deps.current_session`), so a
changed or disabled account takes effect at once. Photos have one more condition: an operator
sees them while the alarm is being handled; once it is closed, only a supervisor (police hold,
export) still can.
"""

from __future__ import annotations

PHOTOS = ("operator", "supervisor")
HANDLE = ("operator", "supervisor")
HOLD = ("supervisor",)
DEVICES = ("operator", "supervisor", "admin")
ACTIVITY = ("operator", "supervisor", "admin")
AUDIT = ("auditor",)
USERS = ("admin",)

HOME = {"operator": "/alarms", "supervisor": "/alarms", "auditor": "/audit", "admin": "/devices"}


def may_see_photos(role: str, alarm: dict) -> bool:
    """Whether `role` may see the photos of `alarm` (as returned by the alarm query) right now."""
    if role == "supervisor":
        return True
    return role == "operator" and alarm["handling"]["state"] != "closed"
