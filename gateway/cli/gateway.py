"""Commands of the gateway: `vericam gateway ...` (init, add-device, dc09-account, run, images)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

import typer

from gateway.cli.common import BY_OPT, ROLE_OPT

app = typer.Typer(help="Run and manage the gateway at the alarm receiving centre.", no_args_is_help=True)

DATA_OPT = typer.Option(..., "--data", help="The gateway's data directory (database, blobs, keys).")
DB_OPT = typer.Option(None, "--db", metavar="URL",
                      help="Keep the metadata in PostgreSQL, e.g. postgresql://127.0.0.1:5432/vericam "
                      "(password in ~/.pgpass or PGPASSWORD, never in the URL). Recorded in "
                      "DATA/database.toml, so other commands on DATA find it. Default: SQLite in DATA.")


def _fail(msg: str, code: int = 2):
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _bind_db(data: Path, db: str | None) -> None:
    """Record `--db` for the data directory, or say clearly why not (never the password)."""
    from gateway.storage.sqldb import DatabaseError, bind

    if db is None:
        return
    try:
        bind(data, db)
    except DatabaseError as exc:
        _fail(str(exc))


BLOBS_OPT = typer.Option(None, "--blobs", help="Where sealed images go: s3://BUCKET/PREFIX for an S3-compatible "
                         "store, or a directory (default: DATA/blobs). Recorded in DATA/blobs.toml.")
S3_ENDPOINT_OPT = typer.Option(None, "--s3-endpoint", help="URL of the S3-compatible endpoint, e.g. "
                               "https://minio.arc.example:9000 (default: AWS S3).")
S3_REGION_OPT = typer.Option(None, "--s3-region", help="Region of the bucket (default: us-east-1).")
S3_CREDS_OPT = typer.Option(None, "--s3-credentials-file", help="AWS-style credentials file ([default] "
                            "aws_access_key_id, aws_secret_access_key); default: AWS_ACCESS_KEY_ID/"
                            "AWS_SECRET_ACCESS_KEY or ~/.aws/credentials. Never printed.")


def _blob_option(data: Path, blobs: str | None, endpoint: str | None, region: str | None,
                 credentials_file: Path | None) -> str | None:
    """Check and record --blobs (and its --s3-* options) if given; exits with a clear error if refused."""
    from gateway.storage.blobstore import BlobConfig, BlobStoreError
    from gateway.provisioning.devices import configure_blobs

    if blobs is None:
        if endpoint or region or credentials_file:
            typer.echo("error: --s3-endpoint, --s3-region and --s3-credentials-file need --blobs s3://BUCKET/PREFIX",
                       err=True)
            raise typer.Exit(2)
        return None
    config = BlobConfig(url=blobs, endpoint=endpoint, region=region,
                        credentials_file=str(credentials_file.resolve()) if credentials_file else None)
    try:
        return configure_blobs(data, config)
    except BlobStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@app.command()
def init(data: Path = DATA_OPT, db: str = DB_OPT, blobs: str = BLOBS_OPT, s3_endpoint: str = S3_ENDPOINT_OPT,
         s3_region: str = S3_REGION_OPT, s3_credentials_file: Path = S3_CREDS_OPT) -> None:
    """Create the data directory, metadata schema and ARC key pair (kept if they exist); say where images go.

    Run it again after an upgrade: it applies any pending schema migrations."""
    from gateway.provisioning.devices import init_arc
    from gateway.storage.sqldb import DatabaseError
    from gateway.storage.store import StoreError

    _bind_db(data, db)
    try:
        info = init_arc(data)
    except (DatabaseError, StoreError) as exc:
        _fail(str(exc), 1)
    what = "created" if info["created"] else "kept the existing"
    typer.echo(f"{what} ARC key {info['arc_key_id']} in {data / 'keys'}; metadata in {info['database']} "
               f"(schema version {info['schema_version']})")
    where = _blob_option(data, blobs, s3_endpoint, s3_region, s3_credentials_file)
    if where:
        typer.echo(f"images will be stored in {where}")


DC09_ACCOUNT_HELP = ("The account the site's alarm panel reports under at the ARC's receiver (3-16 hex digits): "
                     "the gateway's DC-09 reports of this device go out under it, so the ARC software files them "
                     "with the panel's own.")
DC09_PREFIX_HELP = "Account prefix (DC-09 L field), as the panel reports it (1-6 hex digits; default 0)."
DC09_RECEIVER_HELP = "Receiver number (DC-09 R field), as the panel reports it (1-6 hex digits; default: none)."
DC09_AREA_HELP = "The panel's area (partition) the device is in, 0-99 (default 1)."
DC09_ZONE_HELP = "The zone number the device is installed as on the panel, 0-999 (default 1)."


def _set_dc09_account(data: Path, device: str, account: str, prefix: str, receiver: str | None, area: int,
                      zone: int) -> None:
    from gateway.forward.dc09 import DC09Error
    from gateway.provisioning.dc09 import set_account
    from gateway.storage.store import Store, StoreError

    try:
        with Store.open(data) as store:
            site = set_account(store, device, account, prefix, receiver, area, zone)
    except (DC09Error, StoreError) as exc:
        _fail(str(exc))
    typer.echo(f"{device} is reported over DC-09 as account {site.account} (L{site.prefix}"
               f"{'' if site.receiver is None else ' R' + site.receiver}), area {site.area}, zone {site.zone}")


@app.command("add-device")
def add_device_cmd(device: str = typer.Argument(..., help="Device id, [a-z0-9-]{1,32}; also its MQTT user name."),
                   site: str = typer.Option(..., "--site", help="The site (customer premises) it belongs to."),
                   data: Path = DATA_OPT,
                   out: Path = typer.Option(None, "--out", help="Device config file to write "
                                            "(default: DEVICE.json in the current directory)."),
                   dc09_account: str = typer.Option(None, "--dc09-account", help=DC09_ACCOUNT_HELP),
                   dc09_prefix: str = typer.Option("0", "--dc09-prefix", help=DC09_PREFIX_HELP),
                   dc09_receiver: str = typer.Option(None, "--dc09-receiver", help=DC09_RECEIVER_HELP),
                   dc09_area: int = typer.Option(1, "--dc09-area", help=DC09_AREA_HELP),
                   dc09_zone: int = typer.Option(1, "--dc09-zone", help=DC09_ZONE_HELP)) -> None:
    """Provision a device: a fresh device key, and its config file (mode 0600) for flashing."""
    from gateway.provisioning.devices import add_device, write_config
    from gateway.storage.store import StoreError

    if dc09_account is not None:   # checked before anything is written
        from gateway.forward.dc09 import DC09Error
        from gateway.forward.forwarder import Site

        try:
            Site(dc09_account, dc09_prefix, dc09_receiver, dc09_area, dc09_zone)
        except DC09Error as exc:
            _fail(str(exc))
    try:
        config = add_device(data, device, site)
    except (ValueError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    path = out or Path(f"{device}.json")
    write_config(path, config)
    typer.echo(f"provisioned {device} at site {site}; its config (with its key) is in {path} (mode 0600)")
    if dc09_account is not None:
        _set_dc09_account(data, device, dc09_account, dc09_prefix, dc09_receiver, dc09_area, dc09_zone)


@app.command("dc09-account")
def dc09_account_cmd(device: str = typer.Argument(None, help="The device; leave out to list every device's account."),
                     data: Path = DATA_OPT,
                     account: str = typer.Option(None, "--account", help=DC09_ACCOUNT_HELP),
                     prefix: str = typer.Option("0", "--prefix", help=DC09_PREFIX_HELP),
                     receiver: str = typer.Option(None, "--receiver", help=DC09_RECEIVER_HELP),
                     area: int = typer.Option(1, "--area", help=DC09_AREA_HELP),
                     zone: int = typer.Option(1, "--zone", help=DC09_ZONE_HELP),
                     remove: bool = typer.Option(False, "--remove", help="Stop reporting the device over DC-09."),
                     as_json: bool = typer.Option(False, "--json", help="List as JSON.")) -> None:
    """Set (audited) the DC-09 account a device's alarms are reported under, remove it, or list them all.

    A running gateway reads it for each report: no restart is needed."""
    from gateway.provisioning.dc09 import remove_account
    from gateway.storage.store import Store, is_initialised

    if not is_initialised(data):
        _fail(f"no gateway data in {data}: run `vericam gateway init --data {data}`")
    if device is None:
        with Store.open(data) as store:
            rows = store.dc09_accounts.list()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        for r in [] if as_json else rows:
            typer.echo(f"{r['device']:<32} account {r['account']} L{r['prefix']}"
                       f"{'' if r['receiver'] is None else ' R' + r['receiver']} area {r['area']} zone {r['zone']}")
        return
    if remove:
        with Store.open(data) as store:
            done = remove_account(store, device)
        typer.echo(f"{device} is no longer reported over DC-09" if done else f"{device} had no DC-09 account")
        return
    if account is None:
        _fail("give --account ACCOUNT (with --prefix, --receiver, --area, --zone as the panel reports), or --remove")
    _set_dc09_account(data, device, account, prefix, receiver, area, zone)


def _broker_password(path: Path, username: str | None) -> str:
    """The password in a plain file, or the user's entry in broker-config's gateway.secret (JSON)."""
    text = path.read_text().strip()
    if text.startswith("{"):
        secrets = json.loads(text)
        if username not in secrets:
            raise ValueError(f"no password for user {username!r} in it")
        return secrets[username]
    return text


DC09_HELP = ("Forward every alarm and technical event to the ARC's alarm receivers over SIA DC-09: the primary, "
             "then backups ([IPv6]:PORT too). Each device is reported under its panel's account "
             "(`vericam gateway dc09-account`); the alarm goes out at once, a follow-up with the console link "
             "when its photos are stored. Nothing is lost while the receivers are down (docs/OPERATING.md).")
DC09_KEY_FILE_HELP = ("AES keys of the accounts, mode 0600: a line `ACCOUNT KEY` per account, or `KEY` alone for "
                      "every other; KEY is 32/48/64 hex digits, or ascii:CHARACTERS (16/24/32) as pysiaalarm and "
                      "Home Assistant take it. Without it the messages go unencrypted.")
DC09_FORMAT_HELP = "SIA-DCS or ADM-CID (Contact ID), as the receiver expects (default SIA-DCS)."
DC09_CONSOLE_URL_HELP = ("The console's address as the ARC's operators reach it, e.g. https://arc.example/vericam: "
                         "each report carries the alarm's page [V...], which opens after login. Default: "
                         "http://CONSOLE_HOST:CONSOLE_PORT with --console-port; without either, no link and no "
                         "follow-up.")
DC09_SUPERVISION_HELP = ("The gateway's own account at the receivers: a NULL (link test) message goes to each "
                         "under it every --dc09-null-interval seconds. Default: none sent.")
TRUSTED_PROXY_HELP = ("Address or network (CIDR) of a reverse proxy in front of the console whose "
                      "X-Forwarded-For/-Proto headers are believed (repeat for several). Without it those "
                      "headers are ignored and the client is the TCP peer.")


def _console(part: str):
    """A part of the operator console (`server`: ConsoleServer, `trusted_networks`), joined as a
    plug-in through the `vericam.console` entry points (pyproject.toml), as the simulator joins
    the commands: the command line never imports the web package."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="vericam.console", name=part))
    if not found:
        typer.echo("error: the operator console is not installed with this gateway", err=True)
        raise typer.Exit(1)
    return found[0].load()


def _trusted_proxies(cidrs: list[str] | None) -> list[str]:
    trusted_networks = _console("trusted_networks")
    try:
        return trusted_networks(cidrs)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@app.command()
def run(data: Path = DATA_OPT,
        db: str = DB_OPT,
        broker: str = typer.Option("127.0.0.1:1883", "--broker", help="MQTT broker HOST:PORT."),
        retention_days: int = typer.Option(None, "--retention-days", help="Days an image is kept after its "
                                            "alarm (default: DATA/retention.toml, else 7)."),
        client_id: str = typer.Option(None, "--client-id", help="MQTT client id (default: stable per data dir)."),
        blobs: str = BLOBS_OPT, s3_endpoint: str = S3_ENDPOINT_OPT, s3_region: str = S3_REGION_OPT,
        s3_credentials_file: Path = S3_CREDS_OPT,
        sweep_interval: float = typer.Option(None, "--sweep-interval", help="Seconds between retention sweeps "
                                             "(default: DATA/retention.toml, else 60)."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
        username: str = typer.Option(None, "--username", help="Broker account of the gateway "
                                     "(vericam broker-config makes `vericam_gateway`)."),
        password_file: Path = typer.Option(None, "--password-file", help="File holding the broker password "
                                           "(e.g. BROKER_DIR/gateway.secret); never given on the command line."),
        metrics_port: int = typer.Option(None, "--metrics-port",
                                         help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics."),
        console_port: int = typer.Option(None, "--console-port",
                                         help="Serve the operator console on --console-host:PORT."),
        console_host: str = typer.Option("127.0.0.1", "--console-host",
                                         help="Address of the console (put TLS in front of it beyond localhost)."),
        console_http_cookies: bool = typer.Option(False, "--console-http-cookies",
                                                  help="Session cookies without the Secure flag, for plain "
                                                  "http from a browser that is not on this machine."),
        trusted_proxy: list[str] = typer.Option(None, "--trusted-proxy", help=TRUSTED_PROXY_HELP),
        dc09: str = typer.Option(None, "--dc09", metavar="HOST:PORT[,HOST:PORT]", help=DC09_HELP),
        dc09_key_file: Path = typer.Option(None, "--dc09-key-file", help=DC09_KEY_FILE_HELP),
        dc09_format: str = typer.Option("SIA-DCS", "--dc09-format", help=DC09_FORMAT_HELP),
        dc09_transport: str = typer.Option("tcp", "--dc09-transport", help="tcp or udp, as the receiver listens."),
        dc09_console_url: str = typer.Option(None, "--dc09-console-url", metavar="URL", help=DC09_CONSOLE_URL_HELP),
        dc09_supervision_account: str = typer.Option(None, "--dc09-supervision-account", metavar="ACCOUNT",
                                                     help=DC09_SUPERVISION_HELP),
        dc09_null_interval: float = typer.Option(60.0, "--dc09-null-interval", metavar="SECONDS",
                                                 help="Seconds between NULL messages to each receiver (default 60)."),
        dc09_backoff_max: float = typer.Option(30.0, "--dc09-backoff-max", metavar="SECONDS",
                                               help="Longest wait between tries while no receiver answers "
                                               "(default 30)."),
        dc09_ack_timeout: float = typer.Option(5.0, "--dc09-ack-timeout", metavar="SECONDS",
                                               help="How long a receiver may take to answer one message before "
                                               "the next receiver is tried (default 5; raise it for a receiver "
                                               "behind a slow link)."),
        sim_time: str = typer.Option(None, "--sim-time", hidden=True,
                                     help="Simulation only: SCALE@EPOCH_MS, the scaled world clock of a "
                                     "simulated run (gateway/ingest/clock.py).")) -> None:
    """Run the gateway until SIGTERM or SIGINT: verify, store and acknowledge what devices send."""
    from gateway.storage.blobstore import BlobStoreError
    from gateway.storage.keystore import KeyStoreError
    from gateway.ingest.service import Gateway
    from gateway.storage.sqldb import DatabaseError
    from gateway.storage.store import StoreError

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(message)s", stream=sys.stderr)
    log = logging.getLogger("vericam.gateway")
    proxies = _trusted_proxies(trusted_proxy)
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit():
        typer.echo(f"error: --broker must be HOST:PORT, got {broker!r}", err=True)
        raise typer.Exit(2)
    clock = None
    if sim_time is not None:
        from gateway.ingest.clock import sim_clock

        try:
            clock = sim_clock(sim_time, host)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        log.info(f"SIMULATED TIME: the world clock runs {clock.scale} x real time")
    password = None
    if password_file is not None:
        try:
            password = _broker_password(password_file, username)
        except (OSError, ValueError) as exc:
            typer.echo(f"error: cannot take the broker password from {password_file}: {exc}", err=True)
            raise typer.Exit(2)
    dc09_settings = None
    if dc09 is not None:
        from gateway.forward.config import ConfigError, Settings

        if dc09_console_url is None and console_port is not None:
            dc09_console_url = f"http://{console_host}:{console_port}"
        dc09_settings = Settings(dc09, str(dc09_key_file) if dc09_key_file else None, dc09_format, dc09_transport,
                                 dc09_console_url, dc09_supervision_account, dc09_null_interval, dc09_backoff_max,
                                 ack_timeout_s=dc09_ack_timeout)
        try:
            dc09_settings.build_route()  # the key file and receivers are checked before anything starts
        except (ConfigError, ValueError) as exc:
            _fail(str(exc))
    elif dc09_key_file or dc09_console_url or dc09_supervision_account:
        _fail("--dc09-key-file, --dc09-console-url and --dc09-supervision-account need --dc09 HOST:PORT")
    _bind_db(data, db)
    _blob_option(data, blobs, s3_endpoint, s3_region, s3_credentials_file)
    gw = Gateway(data, host, int(port), client_id=client_id, retention_days=retention_days, log=log.info,
                 metrics_port=metrics_port, sweep_interval_s=sweep_interval,
                 username=username, password=password, clock=clock, db=db, dc09=dc09_settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        gw.start()
    except (KeyStoreError, ConnectionError, ValueError, DatabaseError, StoreError, BlobStoreError) as exc:
        # ValueError: retention config refused; DatabaseError: metadata database unreachable;
        # BlobStoreError: the image store is missing or refuses our credentials
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    log.info(f"gateway running on {data} (metadata: {gw.store.db.describe()}), "
             f"subscribed to the devices of {broker}")
    console = None
    if console_port is not None:
        console_server = _console("server")
        try:
            console = console_server(data, console_host, console_port, secure_cookies=not console_http_cookies,
                                    trusted_proxies=proxies).start()
        except (ConnectionError, OSError) as exc:
            gw.stop()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1)
        log.info(f"operator console on {console.url}")
    try:
        stop.wait()
    finally:
        log.info("stopping: finishing the queued messages")
        if console is not None:
            console.stop()
        gw.stop()
        log.info(f"stopped after {gw.stats['messages']} messages, {gw.stats['stored']} captures stored, "
                 f"{gw.stats['rejected']} rejected")


@app.command()
def console(data: Path = DATA_OPT,
            port: int = typer.Option(8080, "--port", help="Port of the console."),
            host: str = typer.Option("127.0.0.1", "--host", help="Address (put TLS in front of it beyond localhost)."),
            http_cookies: bool = typer.Option(False, "--http-cookies",
                                              help="Session cookies without the Secure flag, for plain http."),
            trusted_proxy: list[str] = typer.Option(None, "--trusted-proxy", help=TRUSTED_PROXY_HELP)) -> None:
    """Serve only the operator console on the stored data, without taking messages from a broker."""
    from gateway.storage.store import Store, is_initialised

    console_server = _console("server")
    proxies = _trusted_proxies(trusted_proxy)
    if not is_initialised(data):
        typer.echo(f"error: no gateway data in {data}: run `vericam gateway init --data {data}`", err=True)
        raise typer.Exit(2)
    Store.open(data).close()  # apply any pending migrations before the console reads
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = console_server(data, host, port, secure_cookies=not http_cookies, trusted_proxies=proxies).start()
    except (ConnectionError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    typer.echo(f"operator console on {server.url} (Ctrl-C stops it)", err=True)
    try:
        stop.wait()
    finally:
        server.stop()


@app.command()
def images(data: Path = DATA_OPT,
           device: str = typer.Option(None, "--device", help="Only this device's images."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
           by: str = BY_OPT, role: str = ROLE_OPT) -> None:
    """List the stored images (metadata only; images are shown in the operator console). An operator or
    supervisor, as in the console; the reading is audited."""
    from gateway.cli.common import acting_as, now_ms, open_store
    from gateway.governance.need_to_know import record_read

    with open_store(data) as store:
        acting = acting_as(store, by, "photos", role)
        rows = store.images.list(device)
        record_read(store, by, acting, "view image list", "what the ARC holds", now_ms(),
                    detail={"device": device, "images": len(rows)})
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{len(rows)} images in {data}")
        for col in ("image", "device", "capture", "frame", "trigger", "bytes", "sha256", "delete on"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["id"][:12], r["device"], r["capture_id"][:8], str(r["frame_index"]),
                          r["trigger"] or "", str(r["size"]), r["sha256"][:12], r["kek_day"])
        Console().print(table)
