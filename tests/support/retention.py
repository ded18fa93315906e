"""The retention tests' calendar: a fixed alarm, its deletion day, and a sweeper run at a chosen moment."""

import datetime as dt

from gateway.governance.retention import RetentionPolicy, Sweeper

DAY = 86_400_000


def ms(*args) -> int:
    """A UTC date and time (year, month, day[, hour, minute...]) in epoch milliseconds."""
    return int(dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp() * 1000)


ALARM = ms(2026, 1, 10, 12, 0)  # an alarm at noon; its images are due 2026-01-17 00:00 UTC
DUE = ms(2026, 1, 17)


def sweeper(store, at_ms, **policy):
    """A retention sweeper whose clock stands at `at_ms`, with `policy` over the defaults."""
    return Sweeper(store, RetentionPolicy(**policy), clock=lambda: at_ms / 1000)


def stored_ids(store):
    """The ids of every image row in the store."""
    return {r[0] for r in store.db.execute("SELECT id FROM images")}
