"""The metadata schema and its versions: the numbered migrations of SQLite and of PostgreSQL, and applying them.

Entry i of each list brings the schema from version i to i+1, and entry i of `MIGRATIONS`
(SQLite) and of `PG_MIGRATIONS` (PostgreSQL) make the same change, so `schema_version` means
the same on both engines. Append, never edit; a new migration is added to both lists in the
same commit (tests/test_store_engines.py checks the counts and the resulting columns agree).

How the PostgreSQL text differs from the SQLite text, and why:
- Epoch milliseconds, counters and sizes are BIGINT (SQLite's INTEGER is 64-bit already).
- Blobs are BYTEA. Surrogate ids are identity columns (SQLite's `INTEGER PRIMARY KEY`).
- Flags stay INTEGER 0/1, so the SQL of both engines compares them the same way.
- The audit log's append-only guard is a PL/pgSQL trigger, and also refuses TRUNCATE.
"""

from __future__ import annotations

from gateway.storage.errors import StoreError
from gateway.storage.sqldb import Database

# SQLite.
MIGRATIONS: list[str] = [
    # 1: the thin slice.
    """
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        device_key BLOB NOT NULL,          -- wrapped under the key store's master KEK
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        counter_high INTEGER NOT NULL DEFAULT -1,
        counter_bitmap TEXT NOT NULL DEFAULT '0',  -- hex: the replay window below counter_high
        status_counter INTEGER NOT NULL DEFAULT -1,  -- counter of the last status accepted (§7)
        online INTEGER,
        fw TEXT,
        last_seen_ms INTEGER,
        clock_unset INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chunks (
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        count INTEGER NOT NULL,
        total INTEGER NOT NULL,
        alarm_id TEXT NOT NULL,
        data BLOB NOT NULL,
        received_at_ms INTEGER NOT NULL,
        PRIMARY KEY (device, capture_id, idx)
    );
    CREATE TABLE captures (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        trigger TEXT,
        captured_at INTEGER,
        status TEXT NOT NULL,              -- 'stored' or 'rejected'
        reason TEXT,
        sha256 TEXT NOT NULL,              -- of the sealed capture as received
        size INTEGER NOT NULL,
        frames INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,   -- first chunk
        stored_at_ms INTEGER,              -- after the commit that made it durable
        UNIQUE (device, capture_id)
    );
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        frame_index INTEGER NOT NULL,
        frame_t INTEGER NOT NULL,
        sha256 TEXT NOT NULL,              -- of the plaintext JPEG
        size INTEGER NOT NULL,
        blob_path TEXT NOT NULL,           -- relative to the data directory
        kek_day TEXT NOT NULL,             -- deletion day: the KEK that wraps the data key
        wrapped_key BLOB NOT NULL,
        stored_at_ms INTEGER NOT NULL
    );
    CREATE INDEX images_by_capture ON images (device, capture_id);
    CREATE INDEX images_by_kek_day ON images (kek_day);
    CREATE TABLE alarms (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        code TEXT,
        t INTEGER,
        received_at_ms INTEGER NOT NULL,   -- first chunk or event that named it
        PRIMARY KEY (device, alarm_id)
    );
    CREATE TABLE alarm_captures (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        PRIMARY KEY (device, alarm_id, capture_id)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        alarm_id TEXT,
        kind TEXT NOT NULL,
        code TEXT,
        slot INTEGER,
        t INTEGER,
        clock_unset INTEGER NOT NULL DEFAULT 0,
        received_at_ms INTEGER NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX events_by_device ON events (device, received_at_ms);
    CREATE TABLE rejections (
        reason TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        last_at_ms INTEGER NOT NULL
    );
    """,
    # 2: retention, police hold, audit trail, data-subject rights (issue 6).
    """
    ALTER TABLE images ADD COLUMN delete_at_ms INTEGER;
    UPDATE images SET delete_at_ms = CAST(strftime('%s', kek_day) AS INTEGER) * 1000;
    CREATE INDEX images_by_delete_at ON images (delete_at_ms);
    ALTER TABLE images ADD COLUMN hold_id INTEGER;
    CREATE INDEX images_by_hold ON images (hold_id) WHERE hold_id IS NOT NULL;
    CREATE INDEX images_by_alarm ON images (device, alarm_id);
    CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        name TEXT,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER,               -- NULL: the relationship is open
        restricted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX customers_by_end ON customers (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
    ALTER TABLE devices ADD COLUMN customer_id TEXT REFERENCES customers (id);
    CREATE INDEX devices_by_customer ON devices (customer_id);
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'auditor', 'admin')),
        created_at_ms INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE holds (
        id INTEGER PRIMARY KEY,
        case_ref TEXT NOT NULL,
        reason TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        role_source TEXT NOT NULL,         -- 'users table' or 'asserted (no user accounts)'
        placed_at_ms INTEGER NOT NULL,
        target TEXT NOT NULL,              -- the image or alarm named when placing it
        released_at_ms INTEGER,
        released_by TEXT,
        release_reason TEXT
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        who TEXT NOT NULL,
        what TEXT NOT NULL,
        why TEXT NOT NULL,
        subject TEXT,
        key_id TEXT,
        content_hash TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 3: operator console (issue 7): console passwords, and how each alarm was handled.
    """
    ALTER TABLE users ADD COLUMN password_hash TEXT;   -- argon2id; NULL: cannot log in to the console
    CREATE TABLE alarm_handling (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('acknowledged', 'closed')),
        acknowledged_by TEXT,
        acknowledged_at_ms INTEGER,
        outcome TEXT,                      -- set when closed: verified burglary, false alarm, ...
        note TEXT,
        closed_by TEXT,
        closed_at_ms INTEGER,
        PRIMARY KEY (device, alarm_id)
    );
    """,
    # 4: supervision (PROTOCOL section 11): when a device's silence raised supervision_lost.
    """
    ALTER TABLE devices ADD COLUMN supervision_lost_ms INTEGER;  -- NULL: supervised and heard
    """,
    # 5: an event sealed twice (PROTOCOL section 6, `event_id`) is stored once.
    """
    ALTER TABLE events ADD COLUMN event_id TEXT;                 -- NULL: the device sent none
    CREATE UNIQUE INDEX events_by_event_id ON events (device, event_id);
    """,
    # 6: forwarding to the ARC's alarm receivers over SIA DC-09 (issue 16): the outbox and accounts.
    """
    CREATE TABLE dc09_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the DC-09 sequence number comes from it
        dedupe TEXT UNIQUE,                    -- one report per key (an alarm's follow-up); NULL: no key
        device TEXT,
        event TEXT NOT NULL,
        alarm_id TEXT,
        report TEXT NOT NULL,                  -- JSON: gateway.forward.outbox.Report
        queued_at_ms INTEGER NOT NULL
    );
    CREATE TABLE dc09_deliveries (
        entry_id INTEGER NOT NULL,
        route TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_at_ms INTEGER NOT NULL DEFAULT 0,
        lease_until_ms INTEGER NOT NULL DEFAULT 0,
        leased_by TEXT,
        last_outcome TEXT,
        acked_at_ms INTEGER,                   -- NULL: no receiver of the route acknowledged it yet
        acked_by TEXT,
        PRIMARY KEY (route, entry_id)
    );
    CREATE INDEX dc09_deliveries_unacked ON dc09_deliveries (route, entry_id) WHERE acked_at_ms IS NULL;
    CREATE INDEX dc09_deliveries_by_entry ON dc09_deliveries (entry_id);
    CREATE TABLE dc09_accounts (
        device TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        prefix TEXT NOT NULL DEFAULT '0',
        receiver TEXT,
        area INTEGER NOT NULL DEFAULT 1,
        zone INTEGER NOT NULL DEFAULT 1,
        updated_at_ms INTEGER NOT NULL
    );
    """,
    # 7: service accounts for machine clients (issue 16): API tokens, kept as SHA-256 of the token.
    """
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        scopes TEXT NOT NULL,              -- space-separated, e.g. 'alarms:read photos:read'
        token_sha256 TEXT NOT NULL UNIQUE, -- hex SHA-256 of the token; the token itself is never stored
        created_by TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        revoked_at_ms INTEGER,
        last_used_ms INTEGER
    );
    """,
    # 8: every class of personal data has a rule (issue 15): police handover, the hold's end, erased
    # identities and notes, the exports the gateway wrote, and trimming the audit trail at a checkpoint.
    """
    ALTER TABLE holds ADD COLUMN ended_at_ms INTEGER;        -- released, handed over, or its last image gone
    ALTER TABLE holds ADD COLUMN handed_over_at_ms INTEGER;
    ALTER TABLE holds ADD COLUMN police_requester TEXT;      -- who at the police asked for the material
    ALTER TABLE holds ADD COLUMN police_reference TEXT;      -- the police's reference for that request
    CREATE INDEX holds_by_end ON holds (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
    ALTER TABLE customers ADD COLUMN identity_erased_at_ms INTEGER;  -- name and sites erased, id pseudonymised
    ALTER TABLE alarm_handling ADD COLUMN note_erased_at_ms INTEGER;
    CREATE INDEX alarm_notes_by_close ON alarm_handling (coalesce(closed_at_ms, acknowledged_at_ms))
        WHERE note IS NOT NULL;
    CREATE TABLE exports (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,                -- 'police bundle' or 'subject export'
        path TEXT NOT NULL,                -- the file or directory written, absolute
        subject TEXT,                      -- hold:N, or the customer
        written_by TEXT NOT NULL,
        written_at_ms INTEGER NOT NULL,
        content_hash TEXT,                 -- the manifest's SHA-256
        deleted_at_ms INTEGER              -- NULL: still on disk
    );
    CREATE INDEX exports_live ON exports (written_at_ms) WHERE deleted_at_ms IS NULL;
    CREATE TABLE audit_trims (
        through_seq INTEGER PRIMARY KEY,   -- records 1..through_seq are deleted
        head TEXT NOT NULL,                -- the link of record through_seq: where the kept chain starts
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX audit_by_at ON audit (at_ms);
    DROP TRIGGER audit_append_only_delete;
    CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    WHEN NOT EXISTS (SELECT 1 FROM audit_trims WHERE OLD.seq <= through_seq)
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
]


# PostgreSQL: the same steps.
PG_MIGRATIONS: list[str] = [
    # 1: the thin slice.
    """
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        device_key BYTEA NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at_ms BIGINT NOT NULL,
        counter_high BIGINT NOT NULL DEFAULT -1,
        counter_bitmap TEXT NOT NULL DEFAULT '0',
        status_counter BIGINT NOT NULL DEFAULT -1,
        online INTEGER,
        fw TEXT,
        last_seen_ms BIGINT,
        clock_unset INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE chunks (
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        count INTEGER NOT NULL,
        total BIGINT NOT NULL,
        alarm_id TEXT NOT NULL,
        data BYTEA NOT NULL,
        received_at_ms BIGINT NOT NULL,
        PRIMARY KEY (device, capture_id, idx)
    );
    CREATE TABLE captures (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        trigger TEXT,
        captured_at BIGINT,
        status TEXT NOT NULL,
        reason TEXT,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        frames INTEGER NOT NULL,
        received_at_ms BIGINT NOT NULL,
        stored_at_ms BIGINT,
        UNIQUE (device, capture_id)
    );
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        frame_index INTEGER NOT NULL,
        frame_t BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        blob_path TEXT NOT NULL,
        kek_day TEXT NOT NULL,
        wrapped_key BYTEA NOT NULL,
        stored_at_ms BIGINT NOT NULL
    );
    CREATE INDEX images_by_capture ON images (device, capture_id);
    CREATE INDEX images_by_kek_day ON images (kek_day);
    CREATE TABLE alarms (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        code TEXT,
        t BIGINT,
        received_at_ms BIGINT NOT NULL,
        PRIMARY KEY (device, alarm_id)
    );
    CREATE TABLE alarm_captures (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        capture_id TEXT NOT NULL,
        PRIMARY KEY (device, alarm_id, capture_id)
    );
    CREATE TABLE events (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        device TEXT NOT NULL,
        alarm_id TEXT,
        kind TEXT NOT NULL,
        code TEXT,
        slot INTEGER,
        t BIGINT,
        clock_unset INTEGER NOT NULL DEFAULT 0,
        received_at_ms BIGINT NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX events_by_device ON events (device, received_at_ms);
    CREATE TABLE rejections (
        reason TEXT PRIMARY KEY,
        count BIGINT NOT NULL,
        last_at_ms BIGINT NOT NULL
    );
    """,
    # 2: retention, police hold, audit trail, data-subject rights (issue 6).
    """
    ALTER TABLE images ADD COLUMN delete_at_ms BIGINT;
    UPDATE images SET delete_at_ms = CAST(EXTRACT(EPOCH FROM CAST(substr(kek_day, 1, 10) AS DATE)) AS BIGINT) * 1000;
    CREATE INDEX images_by_delete_at ON images (delete_at_ms);
    ALTER TABLE images ADD COLUMN hold_id BIGINT;
    CREATE INDEX images_by_hold ON images (hold_id) WHERE hold_id IS NOT NULL;
    CREATE INDEX images_by_alarm ON images (device, alarm_id);
    CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        name TEXT,
        started_at_ms BIGINT NOT NULL,
        ended_at_ms BIGINT,
        restricted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX customers_by_end ON customers (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
    ALTER TABLE devices ADD COLUMN customer_id TEXT REFERENCES customers (id);
    CREATE INDEX devices_by_customer ON devices (customer_id);
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'auditor', 'admin')),
        created_at_ms BIGINT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE holds (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        case_ref TEXT NOT NULL,
        reason TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        role_source TEXT NOT NULL,
        placed_at_ms BIGINT NOT NULL,
        target TEXT NOT NULL,
        released_at_ms BIGINT,
        released_by TEXT,
        release_reason TEXT
    );
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        who TEXT NOT NULL,
        what TEXT NOT NULL,
        why TEXT NOT NULL,
        subject TEXT,
        key_id TEXT,
        content_hash TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only';
    END $$;
    CREATE TRIGGER audit_append_only_change BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    """,
    # 3: operator console (issue 7): console passwords, and how each alarm was handled.
    """
    ALTER TABLE users ADD COLUMN password_hash TEXT;
    CREATE TABLE alarm_handling (
        device TEXT NOT NULL,
        alarm_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('acknowledged', 'closed')),
        acknowledged_by TEXT,
        acknowledged_at_ms BIGINT,
        outcome TEXT,
        note TEXT,
        closed_by TEXT,
        closed_at_ms BIGINT,
        PRIMARY KEY (device, alarm_id)
    );
    """,
    # 4: supervision (PROTOCOL section 11): when a device's silence raised supervision_lost.
    """
    ALTER TABLE devices ADD COLUMN supervision_lost_ms BIGINT;
    """,
    # 5: an event sealed twice (PROTOCOL section 6, `event_id`) is stored once.
    """
    ALTER TABLE events ADD COLUMN event_id TEXT;
    CREATE UNIQUE INDEX events_by_event_id ON events (device, event_id);
    """,
    # 6: forwarding to the ARC's alarm receivers over SIA DC-09 (issue 16): the outbox and accounts.
    """
    CREATE TABLE dc09_outbox (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        dedupe TEXT UNIQUE,
        device TEXT,
        event TEXT NOT NULL,
        alarm_id TEXT,
        report TEXT NOT NULL,
        queued_at_ms BIGINT NOT NULL
    );
    CREATE TABLE dc09_deliveries (
        entry_id BIGINT NOT NULL,
        route TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_at_ms BIGINT NOT NULL DEFAULT 0,
        lease_until_ms BIGINT NOT NULL DEFAULT 0,
        leased_by TEXT,
        last_outcome TEXT,
        acked_at_ms BIGINT,
        acked_by TEXT,
        PRIMARY KEY (route, entry_id)
    );
    CREATE INDEX dc09_deliveries_unacked ON dc09_deliveries (route, entry_id) WHERE acked_at_ms IS NULL;
    CREATE INDEX dc09_deliveries_by_entry ON dc09_deliveries (entry_id);
    CREATE TABLE dc09_accounts (
        device TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        prefix TEXT NOT NULL DEFAULT '0',
        receiver TEXT,
        area INTEGER NOT NULL DEFAULT 1,
        zone INTEGER NOT NULL DEFAULT 1,
        updated_at_ms BIGINT NOT NULL
    );
    """,
    # 7: service accounts for machine clients (issue 16): API tokens, kept as SHA-256 of the token.
    """
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        scopes TEXT NOT NULL,              -- space-separated, e.g. 'alarms:read photos:read'
        token_sha256 TEXT NOT NULL UNIQUE, -- hex SHA-256 of the token; the token itself is never stored
        created_by TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        revoked_at_ms BIGINT,
        last_used_ms BIGINT
    );
    """,
    # 8: every class of personal data has a rule (issue 15).
    """
    ALTER TABLE holds ADD COLUMN ended_at_ms BIGINT;
    ALTER TABLE holds ADD COLUMN handed_over_at_ms BIGINT;
    ALTER TABLE holds ADD COLUMN police_requester TEXT;
    ALTER TABLE holds ADD COLUMN police_reference TEXT;
    CREATE INDEX holds_by_end ON holds (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
    ALTER TABLE customers ADD COLUMN identity_erased_at_ms BIGINT;
    ALTER TABLE alarm_handling ADD COLUMN note_erased_at_ms BIGINT;
    CREATE INDEX alarm_notes_by_close ON alarm_handling ((coalesce(closed_at_ms, acknowledged_at_ms)))
        WHERE note IS NOT NULL;
    CREATE TABLE exports (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        subject TEXT,
        written_by TEXT NOT NULL,
        written_at_ms BIGINT NOT NULL,
        content_hash TEXT,
        deleted_at_ms BIGINT
    );
    CREATE INDEX exports_live ON exports (written_at_ms) WHERE deleted_at_ms IS NULL;
    CREATE TABLE audit_trims (
        through_seq BIGINT PRIMARY KEY,
        head TEXT NOT NULL,
        at_ms BIGINT NOT NULL
    );
    CREATE INDEX audit_by_at ON audit (at_ms);
    CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_trims WHERE OLD.seq <= through_seq) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'the audit log is append-only';
    END $$;
    """,
]


def for_engine(engine: str) -> list[str]:
    """The engine's text of the numbered migrations (the same numbers on both engines)."""
    return PG_MIGRATIONS if engine == "postgresql" else MIGRATIONS


def schema_version(db: Database) -> int:
    """The version the database's schema is at (0 for an empty database)."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(db: Database) -> int:
    """Apply the migrations this database has not seen yet, all in one transaction; the version reached.

    Two gateways starting at once on one PostgreSQL database take turns on an advisory
    lock, so the second finds the schema done; on SQLite BEGIN IMMEDIATE does the same.
    A schema newer than this gateway knows is refused (StoreError), never touched."""
    migrations = for_engine(db.engine)
    with db.transaction():
        db.lock("migrate")
        version = schema_version(db)
        if version > len(migrations):
            raise StoreError(f"database schema {version} is newer than this gateway knows "
                             f"({len(migrations)}): upgrade the gateway")
        for i in range(version, len(migrations)):
            db.executescript(migrations[i])
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (i + 1,))
        return len(migrations)
