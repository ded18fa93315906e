"""What an ARC integrator writes for DC-09 forwarding is read, or refused with the fix."""

from __future__ import annotations

import pytest

from gateway.forward.config import (DEFAULT_KEY, ConfigError, Settings, read_key_file, receivers_from_spec,
                                    split_default)
from gateway.forward.transmitter import Route


def test_receivers_primary_then_backups():
    primary, backup, third = receivers_from_spec("arc1.example:12000, 10.0.0.7:12001,[::1]:9", transport="udp")
    assert (primary.name, primary.host, primary.port, primary.transport) == ("primary", "arc1.example", 12000, "udp")
    assert (backup.name, backup.host, backup.port) == ("backup", "10.0.0.7", 12001)
    assert (third.name, third.host, third.port) == ("backup2", "::1", 9)


@pytest.mark.parametrize("spec", ["", "arc.example", "arc.example:0", "arc.example:70000", "::1:9", "a b:1"])
def test_a_receiver_that_is_not_host_port_is_refused(spec):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        receivers_from_spec(spec)


def write(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_key_file_gives_each_account_its_key_and_a_default(tmp_path):
    path = write(tmp_path / "dc09.keys", "# ARC north\n1234 000102030405060708090A0B0C0D0E0F\n"
                 "abcd ascii:0123456789ABCDEF0123456789ABCDEF\n"
                 "000102030405060708090A0B0C0D0E0F1011121314151617\n")
    keys = read_key_file(path)
    assert keys["1234"] == bytes(range(16))
    assert keys["ABCD"] == b"0123456789ABCDEF0123456789ABCDEF"      # a pysiaalarm / Home Assistant key
    assert keys[DEFAULT_KEY] == bytes(range(24))
    per_account, default = split_default(keys)
    route = Route("arc", receivers_from_spec("127.0.0.1:1"), keys=per_account, default_key=default)
    assert route.key_for("abcd") == keys["ABCD"] and route.key_for("9999") == bytes(range(24))
    assert "0123456789" not in repr(route)                            # keys stay out of reprs and logs


@pytest.mark.parametrize("text, reason", [
    ("1234 00112233", "128, 192 or 256 bits"),
    ("1234 not-hex-at-all", "32, 48 or 64 hex digits"),
    ("12G4 000102030405060708090A0B0C0D0E0F", "3 to 16 hex digits"),
    ("1234 000102030405060708090A0B0C0D0E0F\n1234 000102030405060708090A0B0C0D0E0F", "a second key for 1234"),
    ("1234 00 11", "ACCOUNT KEY"),
    ("# nothing\n", "holds no key"),
])
def test_a_bad_key_file_is_refused_naming_the_line_not_the_key(tmp_path, text, reason):
    path = write(tmp_path / "dc09.keys", text)
    with pytest.raises(ConfigError, match=reason) as err:
        read_key_file(path)
    assert "000102030405" not in str(err.value)


def test_a_key_file_others_can_read_is_refused(tmp_path):
    path = write(tmp_path / "dc09.keys", "000102030405060708090A0B0C0D0E0F\n", mode=0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_key_file(path)


def test_the_run_options_become_one_route_with_its_keys(tmp_path):
    keys = write(tmp_path / "dc09.keys", "1234 " + "00" * 16 + "\nascii:0123456789ABCDEF0123456789ABCDEF\n")
    settings = Settings("127.0.0.1:12000,127.0.0.1:12001", str(keys), "adm-cid", console_url="https://arc.example/v",
                        supervision_account="abcd", null_interval_s=90, backoff_max_s=10, ack_timeout_s=12)
    route = settings.build_route()
    assert route.ack_timeout_s == 12
    assert [r.where for r in route.receivers] == ["primary 127.0.0.1:12000/tcp", "backup 127.0.0.1:12001/tcp"]
    assert (route.format, route.null_interval_s, route.backoff_max_s, route.supervision.account) == \
        ("ADM-CID", 90, 10, "ABCD")
    assert route.key_for("1234") == bytes(16) and route.key_for("5678") == b"0123456789ABCDEF0123456789ABCDEF"
    # The simulator hands the same settings to the gateway process as its options.
    argv = settings.argv()
    assert argv[:2] == ["--dc09", "127.0.0.1:12000,127.0.0.1:12001"] and "--dc09-key-file" in argv
    assert argv[argv.index("--dc09-console-url") + 1] == "https://arc.example/v"
    assert argv[argv.index("--dc09-ack-timeout") + 1] == "12"


@pytest.mark.parametrize("change, message", [
    ({"format": "SIA"}, "is not one of SIA-DCS, ADM-CID"),
    ({"console_url": "arc.example/v"}, "must be an http"),
    ({"console_url": "https://arc.example/[x]"}, "must be an http"),
    ({"supervision_account": "xyz"}, "supervision account"),
    ({"backoff_max_s": 0}, "longest backoff"),
    ({"ack_timeout_s": 0}, "ACK timeout must be more than 0"),
    ({"ack_timeout_s": 3600}, "at most 300 seconds"),
])
def test_settings_that_cannot_work_are_refused_before_the_gateway_starts(change, message):
    with pytest.raises(ConfigError, match=message):
        Settings("127.0.0.1:12000", **change).build_route()
