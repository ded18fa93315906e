"""Path and query parameters the routers share: the id patterns, the largest time, the date filter of a form."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Path as PathParam
from fastapi.exceptions import HTTPException

DEVICE = r"^[a-z0-9-]{1,32}$"
HEX = r"^[0-9a-f]{1,64}$"
IMAGE = r"^[0-9a-f]{32}$"
MAX_MS = 2 ** 53

DeviceId = Annotated[str, PathParam(pattern=DEVICE, description="Device id")]
AlarmId = Annotated[str, PathParam(pattern=HEX, description="Alarm id (hex, chosen by the device)")]
ImageId = Annotated[str, PathParam(pattern=IMAGE, description="Image id")]


def parse_when(value: str | None, field: str) -> int | None:
    """'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM' (UTC) from a form -> epoch ms."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{field}: give a date as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)
