"""The JSON API's answers as pydantic models: what /api/openapi.json promises each route returns.

The routes still build plain dicts in the governance layer; naming one of these as a route's
`response_model` documents its shape in the schema and has FastAPI check the answer against
it. Times are epoch milliseconds (`..._ms`) with a UTC text beside them for people; device
timestamps (`t`, `frame_t`) are as the device sent them (epoch seconds).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Ok(BaseModel):
    ok: bool = True


class SessionInfo(BaseModel):
    """The logged-in person (POST /api/session, GET /api/me)."""
    user: str
    role: Literal["operator", "supervisor", "auditor", "admin"]
    csrf_token: str = Field(description="Send as X-CSRF-Token on every POST/DELETE")


class QueuedAlarm(BaseModel):
    """One line of the alarm queue."""
    device: str
    alarm_id: str
    code: str = Field(description="intrusion, fire, panic, ... ('alarm' when the device named none)")
    t: int | None = Field(description="The device's alarm time (epoch s), if its clock was set")
    received_at_ms: int
    site: str
    state: Literal["new", "acknowledged", "closed"]
    outcome: str | None = Field(description="Set when closed")
    photos: int
    held: int = Field(description="Photos under a police hold")
    restricted: bool = Field(False, description="The customer restricted processing (shown to supervisors only, "
                                                "without the site)")
    alarm_at_ms: int
    alarm_at: str
    received_at: str


class Handling(BaseModel):
    """How an alarm was handled: state 'new' alone until someone acknowledges it."""
    state: Literal["new", "acknowledged", "closed"]
    device: str | None = None
    alarm_id: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at_ms: int | None = None
    outcome: str | None = None
    note: str | None = None
    closed_by: str | None = None
    closed_at_ms: int | None = None


class Photo(BaseModel):
    """One verification photo of an alarm; `url` serves the JPEG (audited)."""
    id: str
    capture_id: str
    frame_index: int
    frame_t: int | None
    sha256: str
    size: int
    stored_at_ms: int
    kek_day: str = Field(description="The key the photo is sealed under: its deletion day, or a hold's")
    hold_id: int | None
    delete_at_ms: int | None
    trigger: str | None
    taken_at: str
    stored_at: str
    delete_on: str
    url: str


class Hold(BaseModel):
    """A police hold."""
    id: int
    case_ref: str
    reason: str
    placed_by: str
    role_source: str
    placed_at_ms: int
    target: str
    released_at_ms: int | None
    released_by: str | None
    release_reason: str | None


class AlarmDetail(BaseModel):
    """One alarm with its handling, its photos (newest first) and the holds on them."""
    device: str
    alarm_id: str
    code: str
    t: int | None
    received_at_ms: int
    site: str | None
    alarm_at_ms: int
    alarm_at: str
    received_at: str
    handling: Handling
    photos: list[Photo]
    holds: list[Hold]
    restricted: bool = Field(False, description="The customer restricted processing: the site is hidden, and "
                                                "only a supervisor sees the photos, with a reason")
    photos_need_reason: bool = Field(False, description="Fetch each photo with ?reason=... (a supervisor, for a "
                                                        "closed alarm or a restricted customer); audited")


class HoldPlaced(BaseModel):
    hold: int
    case: str
    images: int = Field(description="Photos the hold now covers")
    delete_on: list[str] = Field(description="The days they are deleted on unless the hold is extended")
    role_source: str


class HoldReleased(BaseModel):
    hold: int
    case: str
    back_on_schedule: int = Field(description="Photos back on their normal retention")
    deleted_now: int = Field(description="Photos past their retention, deleted at release")


class AuditRecord(BaseModel):
    """One record of the keyed, hash-chained audit trail."""
    seq: int
    at_ms: int
    who: str
    what: str
    why: str
    subject: str | None
    key_id: str | None
    content_hash: str | None
    detail: dict[str, Any]
    hash: str
    at: str


class AuditTrail(BaseModel):
    chain_ok: bool
    problems: list[str]
    records: int = Field(description="Records in the whole trail")
    entries: list[AuditRecord] = Field(description="The filtered records, newest first, at most 500")


class Device(BaseModel):
    id: str
    site: str
    revoked: bool
    online: int | None
    state: str
    fw: str | None
    last_heartbeat_ms: int | None
    last_heartbeat: str


class Activity(BaseModel):
    id: int
    device: str
    site: str | None
    alarm_id: str | None
    kind: str
    code: str | None
    slot: int | None = Field(description="The user slot of an arm/disarm")
    t: int | None
    received_at_ms: int
    at: str


class User(BaseModel):
    name: str
    role: str
    created_at_ms: int
    disabled: int
    can_log_in: int


class Token(BaseModel):
    """A service account's API token, as listed: never the token or its hash."""
    name: str
    scopes: list[str]
    created_by: str
    created_at_ms: int
    revoked_at_ms: int | None
    last_used_ms: int | None


class TokenCreated(BaseModel):
    name: str
    scopes: list[str]
    token: str = Field(description="Shown only in this answer; send as Authorization: Bearer")


class PhotoRead(BaseModel):
    """One read of a household's photo (or of the household's own export), from the audit trail."""
    at_ms: int
    at: str
    who: str
    role: str | None = Field(description="The reader's role then ('service' for an API token)")
    what: str = Field(description="view image, open photos, police export or export subject data")
    why: str
    device: str | None
    alarm: str | None
    photos: list[str] = Field(description="The photo ids read (all of the alarm's for 'open photos')")
    audit_seq: int


class AccessReport(BaseModel):
    """Who viewed which of a household's photos, when and why: nothing else of any staff member."""
    customer: str
    devices: list[str]
    reads: list[PhotoRead]
    readers: dict[str, int] = Field(description="Reads per reader")
