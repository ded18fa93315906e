"""Who may do what in the console: the one role table every route checks.

    page / API                      operator  supervisor  auditor  admin
    alarm queue, alarm, photos         x          x
    acknowledge / close alarm          x          x
    police hold / release / export                x
    devices                            x          x                  x
    activity log                       x          x
    users                                                            x
    audit trail                                               x
    a household's access report                   x           x

The table itself is `gateway.governance.users.PERMISSIONS`, which the command line checks too
(`vericam subject ... --by USER`). The admin sees no activity log: it runs devices and accounts,
and what a household did is none of its business (README, issue 15).

Service accounts (API tokens, `gateway.governance.users.SCOPES`) have no role but scopes, and
reach only the JSON routes that name one:

    scope          the routes, and the role check they stand for
    alarms:read    GET /api/alarms, GET /api/alarms/{device}/{alarm}   (an operator's reading)
    photos:read    GET /api/alarms/{device}/{alarm}/photos/{image}     (an operator's photo rule)

A token never changes anything (no acknowledge, close, hold or export), never sees the users,
devices, activity or audit pages, and sees photos only as an operator does: while the alarm is
being handled.

The role is re-read from the users table on every request (`deps.current_session`), so a
changed or disabled account takes effect at once. Photos have more conditions (`photo_rule`):
an operator (or a token) sees them while the alarm is being handled and its customer has not
restricted processing. A supervisor sees them too, but once the alarm is closed, or while the
customer's processing is restricted, only after giving a reason, which goes into the audit
record of the opening and of every photo served under it.
"""

from __future__ import annotations

from gateway.governance.users import PERMISSIONS

PHOTOS = PERMISSIONS["photos"]
HANDLE = PERMISSIONS["handle"]
HOLD = PERMISSIONS["hold"]
DEVICES = PERMISSIONS["devices"]
ACTIVITY = PERMISSIONS["activity"]
AUDIT = PERMISSIONS["audit"]
USERS = PERMISSIONS["users"]
ACCESS_REPORT = PERMISSIONS["access report"]

SERVICE = "service"               # the role of a request made with an API token
ALARMS_READ = "alarms:read"
PHOTOS_READ = "photos:read"

HOME = {"operator": "/alarms", "supervisor": "/alarms", "auditor": "/audit", "admin": "/devices"}

SHOW, WITH_REASON, NEVER = "show", "reason", "no"


def photo_rule(role: str, alarm: dict) -> str:
    """Whether `role` sees the photos of `alarm` (the alarm query's dict, with `restricted`) right now:
    SHOW, WITH_REASON (a supervisor, for a closed alarm or a restricted customer) or NEVER."""
    closed = alarm["handling"]["state"] == "closed"
    restricted = bool(alarm.get("restricted"))
    if role == "supervisor":
        return WITH_REASON if closed or restricted else SHOW
    if role in ("operator", SERVICE) and not closed and not restricted:
        return SHOW
    return NEVER


def why_reason(alarm: dict) -> str:
    """Why a supervisor must give a reason for this alarm's photos (for the page and the audit record)."""
    return "customer restricted processing" if alarm.get("restricted") else "alarm closed"
