"""Commands of the gateway: `vericam gateway ...` (init, add-device, run, images)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

import typer

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


@app.command("add-device")
def add_device_cmd(device: str = typer.Argument(..., help="Device id, [a-z0-9-]{1,32}; also its MQTT user name."),
                   site: str = typer.Option(..., "--site", help="The site (customer premises) it belongs to."),
                   data: Path = DATA_OPT,
                   out: Path = typer.Option(None, "--out", help="Device config file to write "
                                            "(default: DEVICE.json in the current directory).")) -> None:
    """Provision a device: a fresh device key, and its config file (mode 0600) for flashing."""
    from gateway.provisioning.devices import add_device, write_config
    from gateway.storage.store import StoreError

    try:
        config = add_device(data, device, site)
    except (ValueError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    path = out or Path(f"{device}.json")
    write_config(path, config)
    typer.echo(f"provisioned {device} at site {site}; its config (with its key) is in {path} (mode 0600)")


def _broker_password(path: Path, username: str | None) -> str:
    """The password in a plain file, or the user's entry in broker-config's gateway.secret (JSON)."""
    text = path.read_text().strip()
    if text.startswith("{"):
        secrets = json.loads(text)
        if username not in secrets:
            raise ValueError(f"no password for user {username!r} in it")
        return secrets[username]
    return text


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
    _bind_db(data, db)
    _blob_option(data, blobs, s3_endpoint, s3_region, s3_credentials_file)
    gw = Gateway(data, host, int(port), client_id=client_id, retention_days=retention_days, log=log.info,
                 metrics_port=metrics_port, sweep_interval_s=sweep_interval,
                 username=username, password=password, clock=clock, db=db)
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
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the stored images (metadata only; images are shown in the operator console)."""
    from gateway.storage.store import Store, is_initialised

    if not is_initialised(data):
        typer.echo(f"error: no gateway data in {data}: run `vericam gateway init --data {data}`", err=True)
        raise typer.Exit(2)
    with Store.open(data) as store:
        rows = store.images.list(device)
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
