"""Provisioning a device onto the broker, the gateway and its flash: `vericam provision` and `vericam broker-config`.

One device gets, in one step:
- its device key (32 random bytes), registered with the gateway (`gateway.provisioning.devices.add_device`);
- its broker account: user name = device id, a random password, hashed into the broker's
  password file, which the running broker re-reads (SIGHUP);
- its config, `config.json` (mode 0600) with the key, the password and the ARC public key,
  and the broker's CA certificate `ca.der` (DER: MicroPython's `tls` takes no PEM): as files
  for `mpremote cp`, or inside a littlefs image flashed to the board's filesystem partition.

`revoke` refuses the device at the gateway (the store's revoked flag: its messages are
rejected as `unknown_device`) and at the broker (account removed, broker reloaded, the device
disconnected). `rotate` gives the device a new key and a new password; the old ones stop
working at once, and the new config must be put on the device.

No key or password is ever printed or logged: they exist only in the 0600 files written here,
the gateway's key store (wrapped) and the broker's password file (hashed).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import typer
from typer.core import TyperGroup

from gateway.provisioning import brokerconf
from gateway.provisioning.devices import add_device, arc_public, init_arc, write_config
from gateway.provisioning.devices import revoke_device as revoke_at_gateway
from gateway.provisioning.firmware import FirmwareNotFound, firmware_dir
from gateway.storage.store import Store, StoreError

FLASH_BLOCK_SIZE = 4096  # the ESP32's SPI flash erase block, and MicroPython's littlefs block
FLASH_BLOCKS = 512  # 2 MiB: the `vfs` partition of MicroPython's 4 MiB ESP32 boards
COMMANDS = ("device", "revoke", "rotate")


class ProvisionError(Exception):
    pass


# -- the work -------------------------------------------------------------------------------

def device_config(base: dict, site: str, password: str, broker: dict, broker_host: str | None,
                  wifi: dict | None) -> dict:
    """The device's /config.json: what `vericam.agent.load_config` and the ESP32 HAL read."""
    config = dict(base)
    config["site"] = site
    config["broker"] = {"host": broker_host or broker["host"], "port": int(broker["port"]),
                        "password": password, "tls": True, "ca": "/ca.der"}
    if wifi:
        config["wifi"] = wifi
    return config


def provision_device(device_id: str, site: str, data: Path, broker_dir: Path, broker_host: str | None = None,
                     wifi: dict | None = None) -> dict:
    """Register a new device with the gateway and the broker; returns its config (with secrets)."""
    if device_id in COMMANDS:
        raise ProvisionError(f"{device_id!r} is a command name; pick another device id")
    broker = brokerconf.broker_info(broker_dir)
    base = add_device(data, device_id, site)
    password = brokerconf.add_device_account(broker_dir, device_id)
    brokerconf.reload_broker(broker_dir)
    return device_config(base, site, password, broker, broker_host, wifi)


def revoke_device(device_id: str, data: Path, broker_dir: Path | None) -> dict:
    with Store.open(data) as store:
        known = revoke_at_gateway(store, device_id)
    removed = reloaded = False
    if broker_dir is not None:
        removed = brokerconf.remove_device_account(broker_dir, device_id)
        reloaded = bool(brokerconf.reload_broker(broker_dir))
    if not known and not removed:
        raise ProvisionError(f"device {device_id} is not provisioned here")
    return {"gateway": known, "broker_account_removed": removed, "broker_reloaded": reloaded}


def rotate_device(device_id: str, data: Path, broker_dir: Path, broker_host: str | None = None,
                  wifi: dict | None = None, reinstate: bool = False) -> dict:
    """A new device key and broker password for a device; the old ones are refused from now on.

    The gateway's replay window and status counter start afresh: they guard messages MACed
    under a key, and nothing under the old key verifies any more, so a re-flashed device whose
    counter starts again from 0 is accepted."""
    broker = brokerconf.broker_info(broker_dir)
    key = secrets.token_bytes(32)
    with Store.open(data) as store:
        row = store.devices.get(device_id)
        if row is None:
            raise ProvisionError(f"device {device_id} is not provisioned here: use `vericam provision {device_id}`")
        if row["revoked"] and not reinstate:
            raise ProvisionError(f"device {device_id} is revoked; rotate it with --reinstate to accept it again")
        with store.transaction():
            store.devices.rekey(device_id, key)
        base = {"device_id": device_id, "site": row["site"], "device_key": key.hex(), **arc_public(store.keys)}
    password = brokerconf.add_device_account(broker_dir, device_id)
    brokerconf.reload_broker(broker_dir)  # the old password is gone from the file: refused now
    return device_config(base, row["site"], password, broker, broker_host, wifi)


def ca_der(broker_dir: Path) -> bytes:
    """The broker's CA certificate as DER, the form MicroPython's SSLContext.load_verify_locations takes."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate((broker_dir / "ca.pem").read_bytes()).public_bytes(Encoding.DER)


def write_device_files(out: Path, config: dict, ca: bytes) -> list[Path]:
    """config.json (0600) and ca.der in `out`, laid out as on the device's flash root."""
    out.mkdir(parents=True, exist_ok=True)
    write_config(out / "config.json", config)
    (out / "ca.der").write_bytes(ca)
    return [out / "config.json", out / "ca.der"]


def write_flash_image(path: Path, config: dict, ca: bytes, blocks: int = FLASH_BLOCKS,
                      with_firmware: bool = False) -> None:
    """A littlefs v2 image of the board's filesystem partition holding /config.json and /ca.der.

    Geometry and sizes match MicroPython's `vfs.VfsLfs2` on ESP32 (4096-byte blocks; read,
    prog and lookahead sizes 32), so the board mounts it at / as its own. With
    `with_firmware`, the agent (main.py and vericam/) goes in too, for boards without a
    frozen build."""
    from littlefs import LittleFS

    fs = LittleFS(block_size=FLASH_BLOCK_SIZE, block_count=blocks, read_size=32, prog_size=32,
                  lookahead_size=32)
    with fs.open("config.json", "w") as f:
        f.write(json.dumps(config, indent=2) + "\n")
    with fs.open("ca.der", "wb") as f:
        f.write(ca)
    if with_firmware:
        try:
            tree = firmware_dir()
        except FirmwareNotFound as exc:
            raise ProvisionError(str(exc)) from None
        for src in sorted(tree.rglob("*.py")):
            rel = src.relative_to(tree)
            if rel.name in ("manifest.py", "hal_sim.py") or "__pycache__" in rel.parts:
                continue
            for parent in reversed(rel.parents[:-1]):
                try:
                    fs.mkdir(parent.as_posix())
                except FileExistsError:
                    pass
            with fs.open(rel.as_posix(), "wb") as f:
                f.write(src.read_bytes())
    import os
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(fs.context.buffer)
    os.chmod(path, 0o600)


# -- the commands ---------------------------------------------------------------------------

class _DeviceByDefault(TyperGroup):
    """`vericam provision DEVICE ...` means `vericam provision device DEVICE ...`."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["device", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_DeviceByDefault, no_args_is_help=True,
                  help="Provision devices: keys, broker accounts, config files or flash images; revoke and rotate.")

DATA_OPT = typer.Option(..., "--data", help="The gateway's data directory.")
BROKER_OPT = typer.Option(None, "--broker-dir", help="The directory `vericam broker-config` wrote "
                          "(default: DATA/broker).")


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _wifi(ssid: str | None, password_file: Path | None) -> dict | None:
    if ssid is None:
        return None
    password = password_file.read_text().strip() if password_file else ""
    return {"ssid": ssid, "password": password}


def _emit(config: dict, broker_dir: Path, out: Path | None, flash_image: Path | None, blocks: int,
          with_firmware: bool) -> None:
    ca = ca_der(broker_dir)
    if out is not None:
        write_device_files(out, config, ca)
        typer.echo(f"wrote {out}/config.json (mode 0600, holds the device's secrets) and {out}/ca.der; "
                   f"copy them with `tools/flash --config {out}` or "
                   f"`mpremote cp {out}/config.json {out}/ca.der :`, then delete {out}")
    if flash_image is not None:
        write_flash_image(flash_image, config, ca, blocks, with_firmware)
        typer.echo(f"wrote littlefs image {flash_image} ({blocks} blocks of {FLASH_BLOCK_SIZE} bytes, mode 0600); "
                   f"flash it to the board's vfs partition (see README, 'Onto a real board')")


@app.command("device")
def provision_cmd(device: str = typer.Argument(..., help="Device id, lowercase letters, digits and dashes, up to 32; also its MQTT user name."),
                  site: str = typer.Option(..., "--site", help="The site (customer premises) it belongs to."),
                  data: Path = DATA_OPT, broker_dir: Path = BROKER_OPT,
                  out: Path = typer.Option(None, "--out", help="Directory for config.json and ca.der."),
                  flash_image: Path = typer.Option(None, "--flash-image", help="Write a littlefs image."),
                  flash_blocks: int = typer.Option(FLASH_BLOCKS, "--flash-blocks",
                                                   help="Size of the image in 4096-byte blocks."),
                  with_firmware: bool = typer.Option(False, "--with-firmware",
                                                     help="Put the agent into the image too."),
                  broker_host: str = typer.Option(None, "--broker-host", help="Broker host name devices "
                                                  "use (default: the first --host of broker-config)."),
                  wifi_ssid: str = typer.Option(None, "--wifi-ssid"),
                  wifi_password_file: Path = typer.Option(None, "--wifi-password-file",
                                                          help="File holding the WiFi password.")) -> None:
    """Provision a new device: its key, broker account, and config for its flash."""
    if out is None and flash_image is None:
        _fail(ProvisionError("give --out DIR, --flash-image FILE, or both"))
    broker_dir = broker_dir or data / "broker"
    try:
        init_arc(data)
        config = provision_device(device, site, data, broker_dir, broker_host, _wifi(wifi_ssid, wifi_password_file))
        _emit(config, broker_dir, out, flash_image, flash_blocks, with_firmware)
    except (ValueError, StoreError, ProvisionError, brokerconf.BrokerConfigError, OSError) as exc:
        _fail(exc)
    typer.echo(f"provisioned {device} at site {site}")


@app.command("revoke")
def revoke_cmd(device: str = typer.Argument(...), data: Path = DATA_OPT, broker_dir: Path = BROKER_OPT) -> None:
    """Refuse a device from now on, at the gateway and at the broker."""
    broker_dir = broker_dir or data / "broker"
    try:
        result = revoke_device(device, data, broker_dir if (broker_dir / "passwd").exists() else None)
    except (StoreError, ProvisionError) as exc:
        _fail(exc)
    typer.echo(f"revoked {device}: gateway {'refuses it' if result['gateway'] else 'did not know it'}; "
               f"broker account {'removed' if result['broker_account_removed'] else 'not found'}"
               + ("" if result["broker_reloaded"] else "; reload the broker (SIGHUP) to disconnect it"))


@app.command("rotate")
def rotate_cmd(device: str = typer.Argument(...), data: Path = DATA_OPT, broker_dir: Path = BROKER_OPT,
               out: Path = typer.Option(None, "--out"), flash_image: Path = typer.Option(None, "--flash-image"),
               flash_blocks: int = typer.Option(FLASH_BLOCKS, "--flash-blocks"),
               with_firmware: bool = typer.Option(False, "--with-firmware"),
               broker_host: str = typer.Option(None, "--broker-host"),
               reinstate: bool = typer.Option(False, "--reinstate", help="Also accept a revoked device again."),
               wifi_ssid: str = typer.Option(None, "--wifi-ssid"),
               wifi_password_file: Path = typer.Option(None, "--wifi-password-file")) -> None:
    """Give a device a new key and broker password; the old ones are refused at once."""
    if out is None and flash_image is None:
        _fail(ProvisionError("give --out DIR or --flash-image FILE for the new config"))
    broker_dir = broker_dir or data / "broker"
    try:
        config = rotate_device(device, data, broker_dir, broker_host, _wifi(wifi_ssid, wifi_password_file),
                               reinstate)
        _emit(config, broker_dir, out, flash_image, flash_blocks, with_firmware)
    except (StoreError, ProvisionError, brokerconf.BrokerConfigError, OSError) as exc:
        _fail(exc)
    typer.echo(f"rotated {device}: the old key and password are refused; put the new config on the device")


def broker_config(out: Path = typer.Option(..., "--out", help="Directory to write the broker configuration to."),
                  host: list[str] = typer.Option(None, "--host", help="Name or address devices reach the "
                                                 "broker by (repeat; default localhost, 127.0.0.1)."),
                  port: int = typer.Option(8883, "--port", help="TLS listener port for devices."),
                  bind: str = typer.Option("0.0.0.0", "--bind", help="Address of the TLS listener."),
                  local_port: int = typer.Option(1883, "--local-port", help="Loopback listener for a "
                                                 "gateway on the same machine (0: none)."),
                  cafile: Path = typer.Option(None, "--cafile"), certfile: Path = typer.Option(None, "--certfile"),
                  keyfile: Path = typer.Option(None, "--keyfile"),
                  gateway_user: list[str] = typer.Option(None, "--gateway-user",
                                                         help="Gateway account (repeat for several)."),
                  max_queued: int = typer.Option(100000, "--max-queued"),
                  run_as: str = typer.Option(None, "--run-as", help="`user` line: the account Mosquitto runs as.")) -> None:
    """Write a locked-down Mosquitto configuration: TLS, one account per device, ACL by device."""
    try:
        info = brokerconf.write_broker_config(out, hosts=host or None, port=port, bind=bind,
                                              local_port=local_port or None, cafile=cafile, certfile=certfile,
                                              keyfile=keyfile, gateway_users=gateway_user or None,
                                              max_queued=max_queued, run_as=run_as)
    except (brokerconf.BrokerConfigError, OSError) as exc:
        _fail(exc)
    typer.echo(f"wrote {out}/mosquitto.conf: TLS on {bind}:{port} for {info['host']}"
               + (f", gateway loopback on 127.0.0.1:{local_port}" if local_port else "")
               + f"; gateway account(s) {', '.join(info['gateway_users'])} (passwords in {out}/gateway.secret); "
               f"start it with `mosquitto -c {out}/mosquitto.conf`")
