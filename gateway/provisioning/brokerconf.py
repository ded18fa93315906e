"""The production Mosquitto configuration: TLS, one account per device, and access rules that confine it.

`write_broker_config` writes a directory that Mosquitto 2 runs from as it stands:

| file | what |
|---|---|
| `mosquitto.conf` | listeners, authentication, access rules, limits, persistence (the reasons are comments in it) |
| `passwd` | one line per account, in Mosquitto 2's `$7$` PBKDF2-SHA512 format |
| `data/dynamic-security.json` | the access rules, for Mosquitto's dynamic-security plugin: each device its own subtree, never a `$share` group; the gateway accounts; the admin account |
| `ca.pem`, `server.pem`, `server.key` | the TLS chain, made here unless given (`ca.key` is kept 0600 to renew it) |
| `gateway.secret` | the gateway accounts' user names and passwords (0600) |
| `admin.secret` | the admin account's password (0600): provisioning changes the running broker's rules with it |
| `broker.json` | where devices reach the broker and which CA they trust; read by provisioning |
| `data/` | Mosquitto's persistence (the queued messages of the gateway's session) |
| `log/mosquitto.log` | the broker's log, in a directory that belongs to the user Mosquitto runs as |

Running it again keeps what exists (CA, server key, every account's password), so it is safe
to regenerate the configuration after changing a limit (then restart the broker). Device
accounts are added, replaced and removed by provisioning (`add_device_account`,
`remove_device_account`): the password goes into `passwd`, which the running broker re-reads
on a reload (`reload_broker`, SIGHUP, dropping clients whose account is gone), and the
device's role goes to the running broker's plugin over its control topic (or into the
plugin's file when no broker runs from this directory).

Why one user per device, named by its device id: each device's role names its own subtree,
so its credentials are good for that subtree only, and `use_username_as_clientid` makes the
user name the MQTT client id, so no device can take another device's client id and push it
off the broker (MQTT hands a client id to the newest connection).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import ipaddress
import json
import os
import secrets
import re
import signal
import threading
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


# -- access control: the dynamic-security plugin --------------------------------------------
#
# Mosquitto's acl_file never checks a SUBSCRIBE: its check returns "allowed" for every
# subscription ("FIXME - implement ACL subscription strings" in security_default.c, from 2.0.11
# through 2.0.20 and on the development branch) and only filters at delivery. A device could therefore join the gateway's share group
# `$share/vericam-gw/vc/v1/+/up/#`: Mosquitto hands each member of a group its turn of the
# messages, and then drops the device's turns at its read check, so half of every device's
# uplink would vanish. The dynamic-security plugin that ships with Mosquitto 2 checks
# subscriptions, deny by default, so the ACL lives there: one role per device (the plugin has
# no %u), one for the gateway accounts, one for the account provisioning uses to change it.
# Passwords stay in `passwd`; the plugin's entries have none and leave authentication to it.
# With no acl_file configured, an account the plugin does not know may do nothing at all.

ADMIN_USER = "vericam_broker_admin"  # changes the plugin's roles at run time; not a device id either
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
DYNSEC_FILE = Path("data") / "dynamic-security.json"  # in data/: the broker's user rewrites it
LOG_FILE = Path("log") / "mosquitto.log"  # in log/: the broker's user creates it
_DEVICE_ID = re.compile(r"[a-z0-9-]{1,32}")
_PLUGIN = "mosquitto_dynamic_security.so"


def find_dynsec_plugin() -> Path:
    """Where this machine's Mosquitto keeps its dynamic-security plugin."""
    candidates = [Path("/usr/lib/x86_64-linux-gnu") / _PLUGIN, Path("/usr/lib/aarch64-linux-gnu") / _PLUGIN]
    for lib in ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/usr/local/lib64", "/opt/homebrew/lib"):
        candidates += [Path(lib) / _PLUGIN, *sorted(Path(lib).glob(f"*/{_PLUGIN}"))]
    for path in candidates:
        if path.is_file():
            return path
    raise BrokerConfigError(f"Mosquitto's dynamic-security plugin ({_PLUGIN}) is not installed here. It comes "
                            "with Mosquitto 2.0 or later; without it the broker cannot stop a device from "
                            "joining the gateway's $share group (docs/OPERATING.md, \"The broker\")")


def device_role(device_id: str) -> dict:
    """What one device may do: publish into its own up/ subtree, read its own down/ subtree.

    Anything else is refused by the plugin's default, the subscription to any `$share` group
    explicitly too, so that no other rule could ever let a device into the gateway's group."""
    if not _DEVICE_ID.fullmatch(device_id):
        raise BrokerConfigError(f"device id {device_id!r} must match [a-z0-9-]{{1,32}}")
    own = f"vc/v1/{device_id}"
    return {"rolename": f"device-{device_id}", "acls": [
        {"acltype": "subscribePattern", "topic": "$share/#", "priority": 1, "allow": False},
        {"acltype": "publishClientSend", "topic": f"{own}/up/#", "allow": True},
        {"acltype": "subscribePattern", "topic": f"{own}/down/#", "allow": True},
        {"acltype": "publishClientReceive", "topic": f"{own}/down/#", "allow": True},
    ]}


GATEWAY_ROLE = {"rolename": "gateway", "acls": [
    # every device's up/ subtree, as a member of a share group or alone (one gateway, tools)
    {"acltype": "subscribePattern", "topic": "$share/+/vc/v1/+/up/#", "allow": True},
    {"acltype": "subscribePattern", "topic": "vc/v1/+/up/#", "allow": True},
    {"acltype": "publishClientReceive", "topic": "vc/v1/+/up/#", "allow": True},
    # receipts, time and config into every device's down/ subtree
    {"acltype": "publishClientSend", "topic": "vc/v1/+/down/#", "allow": True},
]}
ADMIN_ROLE = {"rolename": "broker-admin", "acls": [
    {"acltype": "publishClientSend", "topic": CONTROL_TOPIC, "allow": True},
    {"acltype": "subscribePattern", "topic": f"{CONTROL_TOPIC}/response", "allow": True},
    {"acltype": "publishClientReceive", "topic": f"{CONTROL_TOPIC}/response", "allow": True},
]}


def dynsec_config(accounts: list[str], gateway_users: list[str]) -> dict:
    """The plugin's whole configuration for these broker accounts (those of `passwd`).

    Accounts that are neither a gateway, the admin nor a valid device id get no entry: the
    broker lets them connect (their password is in `passwd`) and do nothing."""
    devices = sorted(u for u in accounts if u not in gateway_users and _DEVICE_ID.fullmatch(u))
    clients = [{"username": u, "roles": [{"rolename": "gateway"}]} for u in sorted(gateway_users)]
    clients.append({"username": ADMIN_USER, "roles": [{"rolename": ADMIN_ROLE["rolename"]}]})
    clients += [{"username": d, "roles": [{"rolename": f"device-{d}"}]} for d in devices]
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
        "clients": clients,
        "groups": [],
        "roles": [GATEWAY_ROLE, ADMIN_ROLE, *(device_role(d) for d in devices)],
    }


def _write_dynsec(out: Path, accounts: list[str], gateway_users: list[str], owner: str | None = None) -> None:
    _write_private(out / DYNSEC_FILE, json.dumps(dynsec_config(accounts, gateway_users), indent=2) + "\n",
                   owner=owner)


class _Control:
    """A short MQTT 5 session as the admin account that sends the running broker's plugin commands."""

    def __init__(self, broker_dir: Path, info: dict):
        import paho.mqtt.client as mqtt

        try:
            secret = json.loads((broker_dir / "admin.secret").read_text())
        except FileNotFoundError:
            raise BrokerConfigError(f"{broker_dir} has no admin.secret (written by an older version): run "
                                    f"`vericam broker-config --out {broker_dir}` again and restart the broker") from None
        self.responses: list[dict] = []
        self.cond = threading.Condition()
        self.connack = threading.Event()
        self.refused = None
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=ADMIN_USER, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(ADMIN_USER, secret[ADMIN_USER])
        if info.get("local_port"):
            self.addr = ("127.0.0.1", int(info["local_port"]))
        else:  # the TLS listener: our own CA, on this machine, so no host name to check
            import ssl
            ctx = ssl.create_default_context(cafile=str(broker_dir / "ca.pem"))
            ctx.check_hostname = False
            self.c.tls_set_context(ctx)
            bind = info.get("bind", "127.0.0.1")
            self.addr = ("127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind, int(info["port"]))
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.refused = reason_code if reason_code.is_failure else None
        self.connack.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            try:
                self.responses += json.loads(msg.payload).get("responses", [])
            except (ValueError, AttributeError):
                pass
            self.cond.notify_all()

    def run(self, commands: list[dict], tolerate: tuple[str, ...] = (), timeout: float = 10.0) -> None:
        for i, command in enumerate(commands):
            command["correlationData"] = f"vericam-{i}-{secrets.token_hex(4)}"
        try:
            self.c.connect(*self.addr, keepalive=30)
        except OSError as exc:
            raise BrokerConfigError(f"cannot reach the running broker at {self.addr[0]}:{self.addr[1]} to "
                                    f"change its access rules: {exc}") from None
        self.c.loop_start()
        try:
            if not self.connack.wait(timeout) or self.refused is not None:
                raise BrokerConfigError(f"the running broker refused the admin account ({self.refused}): "
                                        "check admin.secret against passwd, and the broker's log")
            self.c.subscribe(f"{CONTROL_TOPIC}/response", qos=1)
            if not self.subscribed.wait(timeout):
                raise BrokerConfigError("the running broker did not answer the admin account's subscription")
            self.c.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
            wanted = {c["correlationData"] for c in commands}
            with self.cond:
                if not self.cond.wait_for(lambda: wanted <= {r.get("correlationData") for r in self.responses},
                                          timeout):
                    raise BrokerConfigError("the running broker did not answer the access-rule change; "
                                            "is its dynamic-security plugin loaded? (see its log)")
                for r in self.responses:
                    if r.get("correlationData") in wanted and r.get("error") and r["error"] not in tolerate:
                        raise BrokerConfigError(f"the broker refused {r.get('command')}: {r['error']}")
        finally:
            self.c.disconnect()
            self.c.loop_stop()


def _grant_device(broker_dir: Path, info: dict, device_id: str) -> None:
    """Give a device its role: in the running broker, or in the plugin's file for the next start."""
    role = device_role(device_id)
    if broker_pids(broker_dir):
        _Control(broker_dir, info).run([
            {"command": "deleteClient", "username": device_id},  # kicks a connection under an old password
            {"command": "deleteRole", "rolename": role["rolename"]},
            {"command": "createRole", **role},
            {"command": "createClient", "username": device_id, "roles": [{"rolename": role["rolename"]}]},
        ], tolerate=("Client not found", "Role not found"))
    else:
        _write_dynsec(broker_dir, list(read_passwd(broker_dir / "passwd")), info.get("gateway_users", []))


def _withdraw_device(broker_dir: Path, info: dict, device_id: str) -> None:
    if broker_pids(broker_dir):
        _Control(broker_dir, info).run([
            {"command": "deleteClient", "username": device_id},  # and disconnects it at once
            {"command": "deleteRole", "rolename": f"device-{device_id}"},
        ], tolerate=("Client not found", "Role not found"))
    else:
        _write_dynsec(broker_dir, list(read_passwd(broker_dir / "passwd")), info.get("gateway_users", []))


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
                   keyfile: Path, max_queued: int, run_as: str | None, plugin: Path) -> str:
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
        "",
        "# Who may publish, subscribe and receive what: the dynamic-security plugin, deny by default.",
        "# Not an acl_file: Mosquitto's acl_file never refuses a subscription, so a device could join",
        "# the gateway's $share group and take its turn of every device's messages. No acl_file may",
        "# be added: the plugin leaves what it does not decide to the next check.",
        f"plugin {plugin}",
        f"plugin_opt_config_file {d / DYNSEC_FILE}",
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
        "# The log goes into log/, which belongs to the broker's user: Mosquitto opens the file after",
        "# dropping to that user, and opens it again on every SIGHUP (reloads, log rotation).",
        f"log_dest file {d / LOG_FILE}",
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
                        run_as: str | None = None, plugin: Path | None = None) -> dict:
    """Write (or refresh) a broker directory. Returns the contents of `broker.json`.

    Gateway passwords are made here and kept in `gateway.secret` (0600), never printed; so is
    the admin account's, in `admin.secret`. A running broker loads the access rules written
    here (`data/dynamic-security.json`) only when it starts: restart it afterwards."""
    plugin = Path(plugin) if plugin is not None else find_dynsec_plugin()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    (out / LOG_FILE.parent).mkdir(mode=0o750, exist_ok=True)
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
    admin_path = out / "admin.secret"
    admin = json.loads(admin_path.read_text()) if admin_path.exists() else {}
    if ADMIN_USER not in admin or ADMIN_USER not in accounts:
        admin[ADMIN_USER] = new_password()
        accounts[ADMIN_USER] = hash_password(admin[ADMIN_USER])
    if run_as and os.geteuid() == 0:
        import pwd
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            raise BrokerConfigError(f"--run-as {run_as}: no such user on this machine") from None
    # What Mosquitto reads or writes after dropping to its user (passwd on every reload, the
    # persistence directory with its access rules, its log) belongs to that user; the
    # gateway's and the admin's secrets do not.
    mosq = run_as if run_as and run_as != "root" else None
    _write_private(secrets_path, json.dumps(gw_secrets, indent=2) + "\n")
    _write_private(admin_path, json.dumps(admin, indent=2) + "\n")
    write_passwd(out / "passwd", accounts, owner=mosq)
    _write_dynsec(out, list(accounts), gateway_users, owner=mosq)
    (out / "acl").unlink(missing_ok=True)  # the acl_file of earlier versions: no longer in force
    if mosq and os.geteuid() == 0:
        import pwd
        entry = pwd.getpwnam(mosq)
        for p in (out / "data", out / LOG_FILE.parent, out / "server.key"):
            if p.exists():
                os.chown(p, entry.pw_uid, entry.pw_gid)
    conf = mosquitto_conf(out, port=port, bind=bind, local_port=local_port, cafile=Path(cafile).resolve(),
                          certfile=Path(certfile).resolve(), keyfile=Path(keyfile).resolve(),
                          max_queued=max_queued, run_as=run_as, plugin=plugin)
    _write_private(out / "mosquitto.conf", conf, 0o644)
    info = {"host": hosts[0], "port": port, "bind": bind, "local_port": local_port, "ca": "ca.pem",
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
    if device_id in info.get("gateway_users", []) or device_id == ADMIN_USER:
        raise BrokerConfigError(f"{device_id!r} is the gateway's account")
    device_role(device_id)  # refuses an id outside the device alphabet before anything is written
    path = Path(broker_dir) / "passwd"
    accounts = read_passwd(path)
    password = new_password()
    accounts[device_id] = hash_password(password)
    write_passwd(path, accounts)
    _grant_device(Path(broker_dir), info, device_id)
    return password


def remove_device_account(broker_dir: str | Path, device_id: str) -> bool:
    """Remove a device's account and its role; a running broker disconnects it at once."""
    path = Path(broker_dir) / "passwd"
    accounts = read_passwd(path)
    if accounts.pop(device_id, None) is None:
        return False
    write_passwd(path, accounts)
    _withdraw_device(Path(broker_dir), broker_info(broker_dir), device_id)
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
