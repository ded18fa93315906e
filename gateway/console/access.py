"""Who may do what in the console: the one role table every route checks.

    page / API                      operator  supervisor  auditor  admin
    alarm queue, alarm, photos         x          x
    acknowledge / close alarm          x          x
    police hold / release / export                x
    devices                            x          x                  x
    activity log                       x          x                  x
    users                                                            x
    audit trail                                               x

Service accounts (API tokens, `gateway.governance.users.SCOPES`) have no role but scopes, and
reach only the JSON routes that name one:

    scope          the routes, and the role check they stand for
    alarms:read    GET /api/alarms, GET /api/alarms/{device}/{alarm}   (an operator's reading)
    photos:read    GET /api/alarms/{device}/{alarm}/photos/{image}     (an operator's photo rule)

A token never changes anything (no acknowledge, close, hold or export), never sees the users,
devices, activity or audit pages, and sees photos only as an operator does: while the alarm is
being handled.

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

SERVICE = "service"               # the role of a request made with an API token
ALARMS_READ = "alarms:read"
PHOTOS_READ = "photos:read"

HOME = {"operator": "/alarms", "supervisor": "/alarms", "auditor": "/audit", "admin": "/devices"}


def may_see_photos(role: str, alarm: dict) -> bool:
    """Whether `role` may see the photos of `alarm` (as returned by the alarm query) right now."""
    if role == "supervisor":
        return True
    return role in ("operator", SERVICE) and alarm["handling"]["state"] != "closed"
