"""The production Mosquitto configuration: TLS, one account per device, and an ACL that confines it.

`write_broker_config` writes a directory that Mosquitto 2 runs from as it stands:

| file | what |
|---|---|
| `mosquitto.conf` | listeners, authentication, limits, persistence (the reasons are comments in it) |
| `passwd` | one line per account, in Mosquitto 2's `$7$` PBKDF2-SHA512 format |
| `acl` | devices confined to `vc/v1/<own id>/...` by `%u` patterns; the gateway account |
| `ca.pem`, `server.pem`, `server.key` | the TLS chain, made here unless given (`ca.key` is kept 0600 to renew it) |
| `gateway.secret` | the gateway account's user name and password (0600) |
| `broker.json` | where devices reach the broker and which CA they trust; read by provisioning |
| `data/` | Mosquitto's persistence (the queued messages of the gateway's session) |

Running it again keeps what exists (CA, server key, every account's password), so it is safe
to regenerate the configuration after changing a limit. Device accounts are added, replaced
and removed by provisioning (`add_device_account`, `remove_device_account`), which then asks
the running broker to reload (`reload_broker`, SIGHUP): Mosquitto re-reads the password file
and the ACL and drops clients whose account is gone.

Why one user per device, named by its device id: the ACL patterns substitute `%u`, so a
device's credentials are good for its own subtree only, and `use_username_as_clientid` makes
the user name the MQTT client id, so no device can take another device's client id and push
it off the broker (MQTT hands a client id to the newest connection).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import ipaddress
import json
import os
import secrets
import signal
from pathlib import Path

GATEWAY_USER = "vericam_gateway"  # the underscore keeps it out of the device-id alphabet [a-z0-9-]
SHARE_GROUP = "vericam-gw"

# Sizes of the protocol (docs/PROTOCOL.md) that the broker limits are derived from.
MAX_DEVICE_ID = 32
ENVELOPE_OVERHEAD = 21 + MAX_DEVICE_ID + 32  # header with the longest id, and the MAC (§3)
CHUNK_HEADER = 32  # §5
MAX_CHUNK_DATA = 8192  # the firmware sends 4 KiB chunks; twice that is the most we allow a device
LONGEST_TOPIC = len(f"vc/v1/{'x' * MAX_DEVICE_ID}/up/capture")
# PUBLISH: fixed header (1 + 4 length bytes), topic (2 + n), packet id (2), payload.
LARGEST_PUBLISH = 5 + 2 + LONGEST_TOPIC + 2 + ENVELOPE_OVERHEAD + CHUNK_HEADER + MAX_CHUNK_DATA
MAX_PACKET_SIZE = 16384
assert LARGEST_PUBLISH < MAX_PACKET_SIZE

PBKDF2_ITERATIONS = 101  # Mosquitto 2's own default; see hash_password


class BrokerConfigError(Exception):
    pass


# -- passwords ------------------------------------------------------------------------------

def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """One password in Mosquitto 2's `$7$` format: `$7$<iterations>$<b64 salt>$<b64 PBKDF2-SHA512>`.

    The iteration count is Mosquitto's default. It buys little here: every password is 32
    random bytes made by provisioning, so there is nothing to guess, while every CONNECT pays
    for the iterations."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def read_passwd(path: Path) -> dict[str, str]:
    accounts: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            user, sep, hashed = line.partition(":")
            if sep and user and not line.startswith("#"):
                accounts[user] = hashed
    return accounts


def _write_private(path: Path, text: str, mode: int = 0o600, owner: str | None = None) -> None:
    """Write a file atomically with `mode` (the rename makes a reload never see half a file).

    The new file keeps the owner of the one it replaces (or takes `owner`) when we run as
    root: Mosquitto re-reads passwd and acl on SIGHUP after dropping to its own user."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    if os.geteuid() == 0:
        ids = None
        if owner is not None:
            import pwd
            entry = pwd.getpwnam(owner)
            ids = (entry.pw_uid, entry.pw_gid)
        elif path.exists():
            st = path.stat()
            ids = (st.st_uid, st.st_gid)
        if ids is not None:
            os.chown(tmp, *ids)
    os.replace(tmp, path)


def write_passwd(path: Path, accounts: dict[str, str], owner: str | None = None) -> None:
    _write_private(path, "".join(f"{user}:{hashed}\n" for user, hashed in sorted(accounts.items())), owner=owner)


# -- ACL ------------------------------------------------------------------------------------

def acl_text(gateway_users: list[str]) -> str:
    lines = [
        "# Vericam broker ACL, written by `vericam broker-config`. Anything not granted is denied.",
        "#",
        "# Devices: one account per device, whose user name is its device id (docs/PROTOCOL.md §2).",
        "# %u is replaced by the user name, so a device may publish only into its own up/ subtree",
        "# and read only its own down/ subtree: not another device's receipts, time or config.",
        "pattern write vc/v1/%u/up/#",
        "pattern read vc/v1/%u/down/#",
        "",
        "# The gateway: reads every device's up/ subtree (as the $share group "
        f"{SHARE_GROUP}) and writes their down/ subtrees.",
    ]
    for user in gateway_users:
        lines += [f"user {user}", "topic read vc/v1/+/up/#", "topic write vc/v1/+/down/#", ""]
    return "\n".join(lines) + "\n"


# -- TLS ------------------------------------------------------------------------------------

def _san(hosts: list[str]):
    from cryptography import x509

    names = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_tls(out: Path, hosts: list[str]) -> None:
    """A CA and a server certificate for `hosts` (EC P-256, which the ESP32's mbedTLS handles)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def pem_key(key) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    now = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=5)
    ca_path, ca_key_path = out / "ca.pem", out / "ca.key"
    if ca_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Vericam broker CA")])
        ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + _dt.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                  critical=True)
                   .sign(ca_key, hashes.SHA256()))
        _write_private(ca_key_path, pem_key(ca_key))
        (out / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    srv_path, srv_key_path = out / "server.pem", out / "server.key"
    if srv_path.exists() and srv_key_path.exists():
        cert = x509.load_pem_x509_certificate(srv_path.read_bytes())
        try:
            have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            have = set()
        if have == set(_san(hosts)) and cert.issuer == ca_cert.subject:
            return
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + _dt.timedelta(days=825))
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(srv_key_path, pem_key(key))
    srv_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# -- mosquitto.conf -------------------------------------------------------------------------

def mosquitto_conf(out: Path, *, port: int, bind: str, local_port: int | None, cafile: Path, certfile: Path,
                   keyfile: Path, max_queued: int, run_as: str | None) -> str:
    d = out.resolve()
    lines = [
        "# Vericam broker, written by `vericam broker-config`. Regenerate it rather than edit it:",
        "# running the command again keeps the certificates and every account in this directory.",
        "",
    ]
    if run_as:
        lines += ["# The user Mosquitto runs as; it must be able to read this directory.", f"user {run_as}", ""]
    lines += [
        "# One set of security settings for every listener: no listener lets anyone in unasked.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {d / 'passwd'}",
        f"acl_file {d / 'acl'}",
        "",
        "# On every listener, the MQTT client id is the user name: no device can take another's",
        "# client id and push that device off the broker (the newest connection with an id wins).",
        "",
        "# Devices reach the broker over TLS (1.2 or later). The server certificate is signed by",
        "# ca.pem, which every device carries and verifies against.",
        f"listener {port} {bind}",
        "protocol mqtt",
        "use_username_as_clientid true",
        f"cafile {cafile}",
        f"certfile {certfile}",
        f"keyfile {keyfile}",
        "tls_version tlsv1.2",
        "require_certificate false",
        "",
    ]
    if local_port:
        lines += [
            "# The gateway on this same machine connects over loopback. It still needs its password;",
            "# the loopback address keeps this listener off the network.",
            f"listener {local_port} 127.0.0.1",
            "protocol mqtt",
            "use_username_as_clientid true",
            "",
        ]
    lines += [
        f"# The largest message of the protocol is a capture chunk: {MAX_CHUNK_DATA} bytes of data at",
        f"# most, its 32-byte chunk header, an envelope of up to {ENVELOPE_OVERHEAD} bytes and the",
        f"# longest topic: {LARGEST_PUBLISH} bytes as a PUBLISH packet. A client sending a bigger packet",
        "# is not speaking Vericam and is disconnected before its bytes reach the gateway.",
        f"max_packet_size {MAX_PACKET_SIZE}",
        "# QoS-1 messages the broker has in flight to one client (for MQTT 5 clients, the Receive",
        "# Maximum it grants them). Devices receive only receipts and time messages and keep",
        "# at most 8 of their own in flight; 32 keeps a gateway's receipts moving without letting",
        "# one client tie up unbounded broker memory.",
        "max_inflight_messages 32",
        "# Messages queued for a client beyond those in flight. The gateway's persistent session",
        "# must keep every chunk that arrives while it is down: an alarm is up to 1024 chunks, so",
        f"# {max_queued} covers about {max_queued // 1024} devices alarming during a gateway outage.",
        "# A device whose chunks were dropped anyway sends them again when no receipt comes.",
        f"max_queued_messages {max_queued}",
        "max_queued_bytes 0",
        "",
        "# Persistence: the gateway's queued messages and retained statuses survive a restart.",
        "# Mosquitto saves only every autosave_interval seconds, which is why a device deletes a",
        "# photo on the gateway's receipt and never on a PUBACK.",
        "persistence true",
        f"persistence_location {d / 'data'}/",
        "autosave_interval 30",
        f"pid_file {d / 'data' / 'mosquitto.pid'}",  # in data/: the broker's user writes it
        "",
        f"log_dest file {d / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "",
    ]
    return "\n".join(lines)


def write_broker_config(out: str | Path, *, hosts: list[str] | None = None, port: int = 8883,
                        bind: str = "0.0.0.0", local_port: int | None = 1883, cafile: Path | None = None,
                        certfile: Path | None = None, keyfile: Path | None = None,
                        gateway_users: list[str] | None = None, max_queued: int = 100000,
                        run_as: str | None = None) -> dict:
    """Write (or refresh) a broker directory. Returns the contents of `broker.json`.

    Gateway passwords are made here and kept in `gateway.secret` (0600), never printed."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    hosts = hosts or ["localhost", "127.0.0.1"]
    gateway_users = gateway_users or [GATEWAY_USER]
    given = [p for p in (cafile, certfile, keyfile) if p is not None]
    if given and len(given) != 3:
        raise BrokerConfigError("give all of --cafile, --certfile and --keyfile, or none to have them made")
    if cafile is None:
        make_tls(out, hosts)
        cafile, certfile, keyfile = out / "ca.pem", out / "server.pem", out / "server.key"
    else:
        for p in given:
            if not Path(p).exists():
                raise BrokerConfigError(f"{p} does not exist")
        import shutil
        if Path(cafile).resolve() != (out / "ca.pem").resolve():
            shutil.copyfile(cafile, out / "ca.pem")  # the one devices are given by provisioning
    accounts = read_passwd(out / "passwd")
    secrets_path = out / "gateway.secret"
    gw_secrets = json.loads(secrets_path.read_text()) if secrets_path.exists() else {}
    for user in gateway_users:
        if user not in gw_secrets or user not in accounts:
            gw_secrets[user] = new_password()
            accounts[user] = hash_password(gw_secrets[user])
    if run_as and os.geteuid() == 0:
        import pwd
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            raise BrokerConfigError(f"--run-as {run_as}: no such user on this machine") from None
    # What Mosquitto reads after dropping to its user (passwd and acl on every reload, the
    # persistence directory) belongs to that user; the gateway's secret does not.
    mosq = run_as if run_as and run_as != "root" else None
    _write_private(secrets_path, json.dumps(gw_secrets, indent=2) + "\n")
    write_passwd(out / "passwd", accounts, owner=mosq)
    _write_private(out / "acl", acl_text(gateway_users), 0o644, owner=mosq)
    if mosq and os.geteuid() == 0:
        import pwd
        entry = pwd.getpwnam(mosq)
        for p in (out / "data", out / "server.key"):
            if p.exists():
                os.chown(p, entry.pw_uid, entry.pw_gid)
    conf = mosquitto_conf(out, port=port, bind=bind, local_port=local_port, cafile=Path(cafile).resolve(),
                          certfile=Path(certfile).resolve(), keyfile=Path(keyfile).resolve(),
                          max_queued=max_queued, run_as=run_as)
    _write_private(out / "mosquitto.conf", conf, 0o644)
    info = {"host": hosts[0], "port": port, "local_port": local_port, "ca": "ca.pem",
            "gateway_users": gateway_users}
    _write_private(out / "broker.json", json.dumps(info, indent=2) + "\n", 0o644)
    return info


# -- device accounts (used by provisioning) -------------------------------------------------

def broker_info(broker_dir: str | Path) -> dict:
    path = Path(broker_dir) / "broker.json"
    if not path.exists():
        raise BrokerConfigError(f"no broker configuration in {broker_dir}: run `vericam broker-config --out "
                                f"{broker_dir}` first")
    return json.loads(path.read_text())


def add_device_account(broker_dir: str | Path, device_id: str) -> str:
    """Give `device_id` a new random broker password (replacing any old one); returns it."""
    info = broker_info(broker_dir)
    if device_id in info.get("gateway_users", []):
        raise BrokerConfigError(f"{device_id!r} is the gateway's account")
    path = Path(broker_dir) / "passwd"
    accounts = read_passwd(path)
    password = new_password()
    accounts[device_id] = hash_password(password)
    write_passwd(path, accounts)
    return password


def remove_device_account(broker_dir: str | Path, device_id: str) -> bool:
    path = Path(broker_dir) / "passwd"
    accounts = read_passwd(path)
    if accounts.pop(device_id, None) is None:
        return False
    write_passwd(path, accounts)
    return True


def broker_pids(broker_dir: str | Path) -> list[int]:
    """The Mosquitto processes running this directory's configuration.

    Those whose command line names this very `mosquitto.conf` (in the foreground, as under
    systemd), and the one in `data/mosquitto.pid` (as a daemon) if that pid is still a
    mosquitto: a stale pid file must not get an unrelated process signalled."""
    conf = str((Path(broker_dir) / "mosquitto.conf").resolve()).encode()

    def argv(pid: int) -> list[bytes]:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return []

    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        args = argv(int(proc.name))
        if args and args[0].endswith(b"mosquitto") and conf in args:
            pids.append(int(proc.name))
    try:
        pid = int((Path(broker_dir) / "data" / "mosquitto.pid").read_text().strip())
        args = argv(pid)
        if pid not in pids and args and args[0].endswith(b"mosquitto"):
            pids.append(pid)
    except (OSError, ValueError):
        pass
    return pids


def reload_broker(broker_dir: str | Path) -> list[int]:
    """SIGHUP the broker running from `broker_dir` so it re-reads passwd and acl.

    Mosquitto then refuses the removed accounts and disconnects their clients. Returns the
    pids signalled; empty when no broker runs from there (reload it yourself then)."""
    done = []
    for pid in broker_pids(broker_dir):
        try:
            os.kill(pid, signal.SIGHUP)
            done.append(pid)
        except ProcessLookupError:
            pass
    return done
