"""The metadata database connection: one small interface over SQLite (WAL) and PostgreSQL.

Every module writes its SQL once, in the subset both engines run, and sends it through
`Database.execute()`:
- `?` placeholders (or `:name` with a dict). The PostgreSQL adapter rewrites them to psycopg's
  `%s` / `%(name)s` (and doubles a literal `%`); nothing else in the SQL is rewritten.
- `INSERT ... ON CONFLICT (...) DO NOTHING / DO UPDATE`, never `INSERT OR IGNORE/REPLACE`.
- `INSERT ... RETURNING id` for a new row's id (there is no `lastrowid` on PostgreSQL).
- `greatest()` and `least()`, which SQLite gets as functions registered here.
- `db.for_update` appended to a SELECT that must lock the row it reads (PostgreSQL only:
  SQLite's `BEGIN IMMEDIATE` already holds the one write lock).
Rows answer both `row["col"]` and `row[0]`, and `dict(row)`, like `sqlite3.Row`.

Transactions: `with db.transaction():` is one real transaction on both engines: `BEGIN
IMMEDIATE` on SQLite, `BEGIN` (READ COMMITTED) on PostgreSQL. `durable=False` lets a
bookkeeping commit skip its own flush (`synchronous=NORMAL` / `synchronous_commit=off`).
Outside a transaction each statement commits on its own (autocommit on both engines).

Where a gateway keeps its metadata is a *target*: a PostgreSQL URL
(`postgresql://HOST:PORT/DBNAME`) or the path of a SQLite file. `database_target()` resolves
it for a data directory: `--db`, else the URL recorded in `DATA/database.toml` by
`vericam gateway init --db`, else `DATA/vericam.sqlite`. The key store never lives here
(`gateway.storage.keystore`): it stays in its own files so that it is backed up and destroyed apart.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import zlib
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

SQLITE_FILE = "vericam.sqlite"
CONFIG_FILE = "database.toml"
PG_SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT_S = 10


class DatabaseError(Exception):
    """The metadata database cannot be used as configured: bad URL, server unreachable."""


# Target resolution ---------------------------------------------------------------------------
def is_url(target: str | Path) -> bool:
    return isinstance(target, str) and "://" in target


def redact(url: str) -> str:
    """The URL with any password replaced by `***`, fit for a log line or an error."""
    if not is_url(url):
        return str(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if _port_or_none(parts) else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _port_or_none(parts) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def check_url(url: str, allow_password: bool = True) -> str:
    """Validate a PostgreSQL URL; raise DatabaseError saying what is wrong (never the password)."""
    shown = redact(url)
    parts = urlsplit(url)
    if parts.scheme not in PG_SCHEMES:
        raise DatabaseError(f"database URL {shown!r} is not supported: use postgresql://HOST:PORT/DBNAME, "
                            "or leave --db out to keep the metadata in SQLite in the data directory")
    try:
        parts.port
    except ValueError:
        raise DatabaseError(f"database URL {shown!r} has a bad port: use postgresql://HOST:PORT/DBNAME") from None
    if not parts.path.strip("/"):
        raise DatabaseError(f"database URL {shown!r} names no database: use postgresql://HOST:PORT/DBNAME")
    if not allow_password and parts.password is not None:
        raise DatabaseError(f"database URL {shown!r} carries a password: keep it out of the URL (a command "
                            "line and a config file are readable by others) and give it to libpq in "
                            "~/.pgpass, PGPASSFILE or PGPASSWORD")
    return url


def recorded_target(data_dir: str | Path) -> str | None:
    """The database URL recorded in DATA/database.toml, or None (SQLite in the data directory)."""
    path = Path(data_dir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        url = tomllib.loads(path.read_text()).get("url")
    except (OSError, ValueError) as exc:
        raise DatabaseError(f"cannot read {path}: {exc}") from None
    if not isinstance(url, str) or not url:
        raise DatabaseError(f"{path} has no `url = \"postgresql://HOST:PORT/DBNAME\"` line")
    return check_url(url)


def database_target(data_dir: str | Path, db: str | Path | None = None) -> str | Path:
    """Where the data directory's metadata lives: `db`, else the recorded URL, else SQLite."""
    if db is not None:
        return check_url(db) if is_url(db) else Path(db)
    return recorded_target(data_dir) or Path(data_dir) / SQLITE_FILE


def bind(data_dir: str | Path, url: str) -> bool:
    """Record `url` as the data directory's metadata database (DATA/database.toml).

    Returns True if it was newly recorded; records nothing if the server cannot be reached.
    Refuses to move a data directory whose metadata
    already lives elsewhere: moving evidence between databases is not something to do by flag."""
    data_dir = Path(data_dir)
    check_url(url, allow_password=False)
    recorded = recorded_target(data_dir)
    if recorded == url:
        return False
    if recorded is not None:
        raise DatabaseError(f"{data_dir} keeps its metadata in {redact(recorded)}, not {redact(url)}: "
                            f"use that URL, or edit {data_dir / CONFIG_FILE} once the data was moved")
    if (data_dir / SQLITE_FILE).exists():
        raise DatabaseError(f"{data_dir} already keeps its metadata in SQLite ({SQLITE_FILE}): moving it "
                            "to PostgreSQL is not supported; start a new data directory for PostgreSQL")
    connect(url).close()  # an unreachable server is reported now, before anything is recorded
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / CONFIG_FILE).write_text(
        "# Where this gateway keeps its metadata (written by `vericam gateway init --db`).\n"
        "# The password, if any, belongs in ~/.pgpass, PGPASSFILE or PGPASSWORD, never here.\n"
        f"url = \"{url}\"\n")
    return True


def connect(target: str | Path, readonly: bool = False) -> "Database":
    """Open the metadata database: a `postgresql://` URL, or a SQLite file path."""
    if is_url(target):
        return PostgresDatabase(check_url(str(target)), readonly=readonly)
    return SqliteDatabase(Path(target), readonly=readonly)


# The common interface ------------------------------------------------------------------------
class Database:
    """One connection. Not for concurrent use by several threads: the caller serialises."""

    engine = ""
    for_update = ""
    target: str | Path
    #: errors of the database itself (locked, disk full, connection lost, deadlock): the work
    #: failed as a whole and may be retried; never a verdict on one message.
    OperationalError: type | tuple = ()
    IntegrityError: type | tuple = ()

    def execute(self, sql: str, params: Any = ()) -> Any:
        raise NotImplementedError

    def executemany(self, sql: str, seq: Any) -> Any:
        raise NotImplementedError

    def executescript(self, script: str) -> None:
        """Run a migration script: several statements, no parameters."""
        raise NotImplementedError

    def execute_together(self, statements: list[tuple[str, Any]]) -> list[list[Any]]:
        """Run several statements in order and return each one's rows (`[]` if it has none).

        On PostgreSQL they go out in one pipeline: one round trip instead of one each. The
        first that fails raises, and the rest of the pipeline is not run."""
        out = []
        for sql, params in statements:
            cur = self.execute(sql, params)
            out.append(cur.fetchall() if cur.description else [])
        return out

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def _begin(self, durable: bool) -> None:
        raise NotImplementedError

    def _end(self, durable: bool) -> None:
        pass

    def _commit(self) -> None:
        self.execute("COMMIT")

    def _rollback(self) -> None:
        self.execute("ROLLBACK")

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One transaction: committed if the block ends normally, rolled back if it raises."""
        self._begin(durable)
        try:
            yield
            self._commit()
        except BaseException:
            if self.in_transaction:
                with contextlib.suppress(Exception):
                    self._rollback()
            raise
        finally:
            self._end(durable)

    def lock(self, name: str) -> None:
        """Serialise a critical section (`name`) across processes until the transaction ends."""

    # Savepoints: one message's writes undone without the rest of its batch (Store.savepoint).
    def savepoint(self, name: str) -> None:
        self.execute(f"SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self.execute(f"RELEASE {name}")

    def rollback_to(self, name: str) -> None:
        """Undo everything since the savepoint `name`, and end it."""
        self.execute(f"ROLLBACK TO {name}")
        self.execute(f"RELEASE {name}")

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.engine} {redact(str(self.target))}"


# SQLite --------------------------------------------------------------------------------------
def _greatest(*args):
    values = [a for a in args if a is not None]
    return max(values) if values else None


def _least(*args):
    values = [a for a in args if a is not None]
    return min(values) if values else None


class SqliteDatabase(Database):
    """The embedded default: one file, WAL, `synchronous=FULL`, BEGIN IMMEDIATE transactions."""

    engine = "sqlite"
    OperationalError = sqlite3.OperationalError
    IntegrityError = sqlite3.IntegrityError

    def __init__(self, path: Path, readonly: bool = False):
        self.target = path
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1,
                                           check_same_thread=False, isolation_level=None)
            else:
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the SQLite database {path}: {exc}") from None
        self._db.row_factory = sqlite3.Row
        for name, fn in (("greatest", _greatest), ("least", _least)):
            self._db.create_function(name, -1, fn, deterministic=True)
        if not readonly:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")

    def __getattr__(self, name: str) -> Any:
        # The sqlite3 connection's own extras (set_progress_handler, backup, ...) for SQLite-only
        # tools and tests; code that must run on both engines stays with the methods above.
        return getattr(self.__dict__["_db"], name)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, seq: Any) -> sqlite3.Cursor:
        return self._db.executemany(sql, seq)

    def executescript(self, script: str) -> None:
        for stmt in _sqlite_statements(script):
            self._db.execute(stmt)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def _begin(self, durable: bool) -> None:
        if not durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._end(durable)
            raise

    def _end(self, durable: bool) -> None:
        if not durable:
            self._db.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        self._db.close()


def _sqlite_statements(script: str) -> Iterator[str]:
    """Split a script into statements; a trigger body's own `;` does not end its statement."""
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                yield buf
            buf = ""
    if buf.strip(" \n;"):
        yield buf


# PostgreSQL ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2048)
def to_psycopg(sql: str) -> str:
    """Rewrite `?` to `%s` and `:name` to `%(name)s`, and double a literal `%`.

    Quoted strings and identifiers, `--` comments and `::` casts are left as they are (a `%`
    in them is still doubled: psycopg reads every `%` of a query that has parameters)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)
            end = n - 1 if end < 0 else end
            out.append(sql[i:end + 1].replace("%", "%%"))
            i = end + 1
            continue
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        if ch == ":" and sql.startswith("::", i):
            out.append("::")
            i += 2
            continue
        if ch == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(f"%({sql[i + 1:j]})s")
            i = j
            continue
        out.append({"?": "%s", "%": "%%"}.get(ch, ch))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type:
    """A tuple that also answers `row["name"]`, `keys()` and so `dict(row)`, like sqlite3.Row."""
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
        index.setdefault(name.lower(), i)

    class Row(tuple):
        __slots__ = ()

        def __getitem__(self, key):
            if isinstance(key, str):
                try:
                    key = index[key] if key in index else index[key.lower()]
                except KeyError:
                    raise IndexError(f"no column named {key!r}") from None
            return tuple.__getitem__(self, key)

        def keys(self) -> list[str]:
            return list(names)

    return Row


def _pg_row_factory(cursor):
    # The column names straight from the result: `cursor.description` builds a Column object
    # per column of every statement, which cost a tenth of the ingest's time on PostgreSQL.
    res = cursor.pgresult
    if res is None or not res.nfields:
        return tuple
    return _row_class(tuple(res.fname(i).decode() for i in range(res.nfields)))


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3: autocommit, explicit BEGIN/COMMIT, reconnects when idle."""

    engine = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, readonly: bool = False):
        import psycopg

        self._psycopg = psycopg
        self.OperationalError = psycopg.OperationalError
        self.IntegrityError = psycopg.IntegrityError
        self.target = url
        self.readonly = readonly
        self._in_block = False
        self._queued: list[str] = []  # SAVEPOINT / RELEASE not sent yet: see `savepoint()`
        self._conn = self._connect()

    def _connect(self):
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self.target, autocommit=True, row_factory=_pg_row_factory,
                                   connect_timeout=CONNECT_TIMEOUT_S, application_name="vericam-gateway")
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to the metadata database {redact(self.target)}: "
                                f"{self._scrub(exc)}; check that PostgreSQL is running and the URL, "
                                "user and password (~/.pgpass) are right") from None
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    def _scrub(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split())
        password = urlsplit(self.target).password
        return text.replace(password, "***") if password else text

    def _live(self):
        """The connection. One lost with the server is replaced, but never inside a
        transaction: there the statement must fail, or a COMMIT would land on a fresh
        connection and "succeed" with nothing to commit."""
        if self._conn.closed and not self._in_block:
            self._conn = self._connect()
        return self._conn

    def execute(self, sql: str, params: Any = ()):
        if self._queued:
            return self.execute_together([(sql, params)], cursors=True)[0]
        conn = self._live()
        if params:
            return conn.execute(to_psycopg(sql), params)
        return conn.execute(sql)

    def execute_together(self, statements: list[tuple[str, Any]], cursors: bool = False) -> list:
        conn = self._live()
        queued, self._queued = self._queued, []
        with conn.pipeline():
            for sql in queued:
                conn.execute(sql)
            curs = [conn.execute(to_psycopg(sql), params) if params else conn.execute(sql)
                    for sql, params in statements]
        if cursors:
            return curs
        return [cur.fetchall() if cur.pgresult is not None and cur.pgresult.nfields else [] for cur in curs]

    def executemany(self, sql: str, seq: Any):
        self._send_queued()
        cur = self._live().cursor()
        cur.executemany(to_psycopg(sql), seq)
        return cur

    def executescript(self, script: str) -> None:
        self._send_queued()
        self._live().execute(script)

    @property
    def in_transaction(self) -> bool:
        pq = self._psycopg.pq.TransactionStatus
        return not self._conn.closed and self._conn.info.transaction_status in (pq.INTRANS, pq.INERROR,
                                                                                pq.ACTIVE)

    def _begin(self, durable: bool) -> None:
        self._queued = []
        self.execute("BEGIN")
        self._in_block = True
        if not durable:
            self.execute("SET LOCAL synchronous_commit = off")

    def _end(self, durable: bool) -> None:
        self._in_block = False
        self._queued = []

    # Savepoints cost a round trip each, and a batch takes one per message. So SAVEPOINT and
    # RELEASE wait in `_queued` and go out in one pipeline with the message's first statement
    # that needs an answer; a savepoint with no statement inside is never sent at all. COMMIT
    # and ROLLBACK end every savepoint, so what is still queued then is dropped. ROLLBACK TO is
    # sent at once: after a failed statement the transaction is unusable until it is.
    def _send_queued(self) -> None:
        if self._queued:
            self.execute_together([])

    def _commit(self) -> None:
        self._queued = []
        self.execute("COMMIT")

    def _rollback(self) -> None:
        self._queued = []
        self.execute("ROLLBACK")

    def savepoint(self, name: str) -> None:
        self._queued.append(f"SAVEPOINT {name}")

    def release(self, name: str) -> None:
        if self._queued and self._queued[-1] == f"SAVEPOINT {name}":
            self._queued.pop()  # nothing ran inside it
        else:
            self._queued.append(f"RELEASE {name}")

    def rollback_to(self, name: str) -> None:
        """Undo everything since the savepoint `name`, and end it."""
        if self._queued and self._queued[-1] == f"SAVEPOINT {name}":
            self._queued.pop()  # never sent: nothing ran inside it
            return
        self._send_queued()
        self.execute(f"ROLLBACK TO {name}; RELEASE {name}")

    def lock(self, name: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", (zlib.crc32(f"vericam:{name}".encode()),))

    def close(self) -> None:
        self._conn.close()
