"""What an ARC integrator configures for DC-09 forwarding, read from its textual forms.

For each destination (route) at the ARC:
- the receivers, primary first: `HOST:PORT[,HOST:PORT...]` (`[::1]:PORT` for IPv6), over TCP
  unless UDP is asked for (`receivers_from_spec`);
- the format the receiver expects: `SIA-DCS` or `ADM-CID` (Contact ID);
- the keys, in a key file readable by the gateway's user only (`read_key_file`): one line per
  account, `ACCOUNT KEY`, or a line with the key alone for every account not listed. A key is
  32, 48 or 64 hex digits (AES-128/192/256), as receivers show it. Some receivers (pysiaalarm,
  and so Home Assistant) take a 16, 24 or 32-character key and use its characters as the key
  bytes: write those as `ascii:CHARACTERS`. Without a key the account is sent unencrypted;
- the supervision account for NULL messages and their interval (DC-09 and EN 50136 leave the
  interval to the ARC: 90 s or 180 s are usual for the categories of EN 50136-1);
- and for each device, its `Site`: the account, account prefix (L) and receiver number (R)
  the panel itself reports under, its area and its zone, so the ARC software files both
  reports as one site; and the console's external address, for the verification link.

`Settings` gathers what `vericam gateway run --dc09 ...` is given for one route (the options
are its fields) and makes the `Route` from it; the sites are kept with the devices in the
gateway's database (`vericam gateway dc09-account`, `gateway.provisioning.dc09`).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.forward import codes, dc09
from gateway.forward.transmitter import Receiver, Route

DEFAULT_KEY = "*"          # the key-file entry for every account not listed

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]\s]+)):(?P<port>\d{1,5})$")


class ConfigError(ValueError):
    """A DC-09 setting that cannot be used; the text says which and how to fix it."""


def receivers_from_spec(spec: str, transport: str = "tcp") -> tuple[Receiver, ...]:
    """`HOST:PORT[,HOST:PORT...]` -> receivers named primary, backup, backup2, ..."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ConfigError("no DC-09 receiver given: write HOST:PORT[,HOST:PORT] (primary, then backup)")
    out = []
    for i, part in enumerate(parts):
        m = _HOST_PORT.match(part)
        if not m or not 0 < int(m["port"]) < 65536:
            raise ConfigError(f"DC-09 receiver {part!r} is not HOST:PORT (or [IPv6]:PORT) with a port 1-65535")
        name = "primary" if i == 0 else ("backup" if i == 1 else f"backup{i}")
        out.append(Receiver(name, m["v6"] or m["host"], int(m["port"]), transport))
    return tuple(out)


def parse_key(text: str) -> bytes:
    """A key as a receiver shows it: 32/48/64 hex digits, or `ascii:` and 16/24/32 characters."""
    text = text.strip()
    if text.startswith("ascii:"):
        key = text[len("ascii:"):].encode("ascii", "replace")
    else:
        if not re.fullmatch(r"[0-9A-Fa-f]+", text):
            raise ConfigError("a DC-09 key is 32, 48 or 64 hex digits, or ascii: followed by 16, 24 or 32 characters")
        key = bytes.fromhex(text) if len(text) % 2 == 0 else b""
    if len(key) not in dc09.KEY_SIZES:
        raise ConfigError(f"a DC-09 key has 128, 192 or 256 bits; this one has {len(key) * 8}")
    return key


def read_key_file(path: str | Path) -> dict[str, bytes]:
    """account -> key from a key file (see the module docstring); `DEFAULT_KEY` for the line without an account.

    The file must not be readable by group or others, like an ssh key: it holds every site's key.
    Errors name the file and line, never the key.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"DC-09 key file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"DC-09 key file {path} is open to group or others (mode {stat.S_IMODE(mode):o}): "
                          f"chmod 600 {path}")
    keys: dict[str, bytes] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):           # comments are whole lines: keys may hold "#"
            continue
        fields = line.split()
        if len(fields) == 1:
            account, text = DEFAULT_KEY, fields[0]
        elif len(fields) == 2:
            account, text = fields
            try:
                dc09.Account(account)
            except dc09.DC09Error as exc:
                raise ConfigError(f"{path}:{n}: {exc}") from None
            account = account.upper()
        else:
            raise ConfigError(f"{path}:{n}: write ACCOUNT KEY, or KEY alone for every other account")
        if account in keys:
            raise ConfigError(f"{path}:{n}: a second key for {'the default' if account == DEFAULT_KEY else account}")
        try:
            keys[account] = parse_key(text)
        except ConfigError as exc:
            raise ConfigError(f"{path}:{n}: {exc}") from None
    if not keys:
        raise ConfigError(f"DC-09 key file {path} holds no key")
    return keys


def split_default(keys: dict[str, bytes]) -> tuple[dict[str, bytes], bytes | None]:
    """(per-account keys, default key) as `Route(keys=..., default_key=...)` takes them."""
    rest = {a: k for a, k in keys.items() if a != DEFAULT_KEY}
    return rest, keys.get(DEFAULT_KEY)


@dataclass(frozen=True)
class Settings:
    """One route's DC-09 settings, as `vericam gateway run` takes them (`--dc09...` options).

    `receivers`: `HOST:PORT[,HOST:PORT...]`, primary first. `key_file`: see `read_key_file`
    (None: unencrypted). `format`: SIA-DCS or ADM-CID. `transport`: tcp or udp. `console_url`:
    the console's address as the ARC's operators reach it, for the verification link (None: no
    link, and no follow-up). `supervision_account`: the gateway's own account for NULL
    messages every `null_interval_s` (None: none sent). `backoff_max_s`: the longest wait
    between tries while no receiver answers. `ack_timeout_s`: how long a receiver may take to
    answer one message before the next receiver of the route is tried.
    """
    receivers: str
    key_file: str | None = None
    format: str = dc09.SIA_DCS
    transport: str = "tcp"
    console_url: str | None = None
    supervision_account: str | None = None
    null_interval_s: float = 60.0
    backoff_max_s: float = 30.0
    route: str = "arc"
    ack_timeout_s: float = 5.0

    def build_route(self) -> Route:
        """The route, with its keys read from the key file. Raises ConfigError saying what to fix."""
        receivers = receivers_from_spec(self.receivers, self.transport)
        fmt = self.format.upper()
        if fmt not in codes.FORMATS:
            raise ConfigError(f"DC-09 format {self.format!r} is not one of {', '.join(codes.FORMATS)}")
        if self.console_url is not None and not re.match(r"^https?://[^\s\[\]|]+$", self.console_url):
            raise ConfigError(f"console address {self.console_url!r} must be an http(s):// URL without "
                              "spaces, [, ] or |")
        keys, default = split_default(read_key_file(self.key_file)) if self.key_file else ({}, None)
        try:
            supervision = dc09.Account(self.supervision_account.upper()) if self.supervision_account else None
        except dc09.DC09Error as exc:
            raise ConfigError(f"supervision account: {exc}") from None
        if self.null_interval_s < 0 or self.backoff_max_s <= 0:
            raise ConfigError("the NULL interval must be 0 or more seconds, the longest backoff more than 0")
        if not 0 < self.ack_timeout_s <= 300:
            raise ConfigError(f"the ACK timeout must be more than 0 and at most 300 seconds, got {self.ack_timeout_s:g}")
        return Route(self.route, receivers, fmt, keys=keys, default_key=default, supervision=supervision,
                     null_interval_s=self.null_interval_s, backoff_max_s=self.backoff_max_s,
                     backoff_first_s=min(0.5, self.backoff_max_s), ack_timeout_s=self.ack_timeout_s)

    def argv(self) -> list[str]:
        """The same settings as `vericam gateway run` options (the simulator starts a gateway with them)."""
        out = ["--dc09", self.receivers, "--dc09-format", self.format, "--dc09-transport", self.transport,
               "--dc09-null-interval", f"{self.null_interval_s:g}", "--dc09-backoff-max", f"{self.backoff_max_s:g}",
               "--dc09-ack-timeout", f"{self.ack_timeout_s:g}"]
        if self.key_file:
            out += ["--dc09-key-file", str(self.key_file)]
        if self.console_url:
            out += ["--dc09-console-url", self.console_url]
        if self.supervision_account:
            out += ["--dc09-supervision-account", self.supervision_account]
        return out
