"""The production broker configuration, attacked from outside: a real Mosquitto runs exactly what
`vericam broker-config` wrote, and clients speak to it over verified TLS like devices would."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.provisioning.brokerconf import (GATEWAY_USER, SHARE_GROUP, add_device_account, hash_password,
                                reload_broker, remove_device_account, write_broker_config)
from simulator.broker import free_port

from support.cli import VERICAM
from support.secure_broker import Client, SecureBroker, device, gateway


@pytest.fixture
def secure(tmp_path):
    b = SecureBroker(tmp_path)
    for dev in ("cam-a", "cam-b"):
        b.add_device(dev)
    b.start()
    yield b
    b.stop()


def test_no_one_connects_without_the_right_credentials(secure):
    assert not Client(secure, None, None).connect(), "anonymous access must be off"
    assert not Client(secure, "cam-a", "not-the-password").connect()
    assert not Client(secure, "cam-a", secure.passwords["cam-b"]).connect(), "another device's password"
    assert not Client(secure, "nobody", secure.passwords["cam-a"]).connect()
    # The loopback listener for the gateway asks for the same credentials.
    assert not Client(secure, None, None, tls=False).connect()
    local = Client(secure, GATEWAY_USER, secure.gateway_password, tls=False)
    assert local.connect()
    local.close()


def test_the_device_listener_speaks_only_tls_with_a_certificate_the_device_can_verify(secure, tmp_path):
    # Plain MQTT on the TLS port gets nowhere, even with the right credentials.
    plain = Client(secure, "cam-a", secure.passwords["cam-a"], tls=False)
    plain.port = secure.port
    assert not plain.connect()
    plain.close()
    # A client that trusts some other CA refuses the broker.
    from gateway.provisioning.brokerconf import make_tls
    (tmp_path / "other").mkdir()
    make_tls(tmp_path / "other", ["localhost"])
    other = Client(secure, "cam-a", secure.passwords["cam-a"])
    other.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cam-a")
    other.c.tls_set(ca_certs=str(tmp_path / "other" / "ca.pem"))
    other.c.username_pw_set("cam-a", secure.passwords["cam-a"])
    with pytest.raises(Exception):
        other.c.connect("127.0.0.1", secure.port)


def test_a_device_cannot_publish_into_another_devices_subtree(secure):
    gw = gateway(secure)
    a, b = device(secure, "cam-a"), device(secure, "cam-b")
    b_sub = Client(secure, "cam-b", secure.passwords["cam-b"], client_id="cam-b")
    try:
        a.publish("vc/v1/cam-b/up/capture", b"forged chunk for cam-b")
        a.publish("vc/v1/cam-b/up/status", b"forged offline status for cam-b")
        a.publish("vc/v1/cam-b/down/receipt", b"forged receipt to cam-b")
        a.publish("vc/v1/cam-a/up/event", b"cam-a speaking for itself")
        seen = gw.wait_for(b"cam-a speaking for itself")
        # Messages of one client arrive in order: had the forgeries got through, they would be here.
        assert seen == [("vc/v1/cam-a/up/event", b"cam-a speaking for itself")]
    finally:
        for c in (gw, a, b, b_sub):
            c.close()


def test_a_device_cannot_read_another_devices_receipts_or_config(secure):
    gw = gateway(secure)
    a, b = device(secure, "cam-a"), device(secure, "cam-b")
    try:
        a.subscribe("vc/v1/cam-a/down/#")
        for snoop in ("vc/v1/cam-a/down/#", "vc/v1/+/down/#", "vc/v1/+/up/#", "#"):
            b.subscribe(snoop)
        b.subscribe("vc/v1/cam-b/down/#")
        for leaf in ("receipt", "time", "config"):
            gw.publish(f"vc/v1/cam-a/down/{leaf}", f"for cam-a only: {leaf}".encode())
        a.publish("vc/v1/cam-a/up/capture", b"cam-a chunk")
        gw.wait_for(b"cam-a chunk")
        gw.publish("vc/v1/cam-b/down/receipt", b"for cam-b")
        got_a = a.wait_for(b"for cam-a only: config")
        assert [t for t, _ in got_a] == [f"vc/v1/cam-a/down/{leaf}" for leaf in ("receipt", "time", "config")]
        got_b = b.wait_for(b"for cam-b")
        assert got_b == [("vc/v1/cam-b/down/receipt", b"for cam-b")], "cam-b saw more than its own receipt"
    finally:
        for c in (gw, a, b):
            c.close()


def test_a_device_cannot_join_the_gateways_share_group_and_drain_its_messages(secure):
    # Mosquitto hands each message of a $share group to one member in turn. A device in the
    # gateway's group would take its share of every device's uplink; its read check then drops
    # them, so alarms would vanish without a trace. The broker must refuse the subscription.
    gw = gateway(secure)
    a, b = device(secure, "cam-a"), device(secure, "cam-b")
    try:
        codes = a.subscribe(f"$share/{SHARE_GROUP}/vc/v1/+/up/#")
        assert all(c.is_failure for c in codes), f"cam-a was let into the gateway's share group: {codes}"
        sent = [f"cam-b event {i}".encode() for i in range(20)]
        for payload in sent:
            b.publish("vc/v1/cam-b/up/event", payload)
        got = gw.wait_for_count(len(sent))
        assert [p for _, p in got] == sent, f"the gateway got {len(got)} of cam-b's {len(sent)} messages"
        time.sleep(0.3)
        assert a.messages == [], "cam-a received messages meant for the gateway"
    finally:
        for c in (gw, a, b):
            c.close()


def test_a_device_provisioned_while_the_broker_runs_is_confined_the_same_way(secure):
    # Provisioning gives a new device its role through the running broker's plugin (the file is
    # read only at start-up), and a revoked device loses it at once.
    gw = gateway(secure)
    secure.add_device("cam-c")
    assert reload_broker(secure.dir) == [secure.proc.pid]
    c = device(secure, "cam-c")
    try:
        assert all(code.is_failure for code in c.subscribe(f"$share/{SHARE_GROUP}/vc/v1/+/up/#"))
        assert all(code.is_failure for code in c.subscribe("vc/v1/+/up/#"))
        assert not any(code.is_failure for code in c.subscribe("vc/v1/cam-c/down/#"))
        c.publish("vc/v1/cam-c/up/event", b"cam-c alarm")
        assert gw.wait_for(b"cam-c alarm") == [("vc/v1/cam-c/up/event", b"cam-c alarm")]
        gw.publish("vc/v1/cam-c/down/receipt", b"receipt for cam-c")
        assert c.wait_for(b"receipt for cam-c") == [("vc/v1/cam-c/down/receipt", b"receipt for cam-c")]
        assert remove_device_account(secure.dir, "cam-c")
        assert c.disconnected.wait(5), "a revoked device kept its connection"
    finally:
        for cl in (gw, c):
            cl.close()


def test_a_device_cannot_use_the_brokers_control_topic_to_widen_its_rights(secure):
    gw = gateway(secure)
    a, b = device(secure, "cam-a"), device(secure, "cam-b")
    try:
        assert all(code.is_failure for code in a.subscribe("$CONTROL/dynamic-security/v1/response"))
        grab = {"commands": [
            {"command": "createRole", "rolename": "mine", "acls": [
                {"acltype": "subscribePattern", "topic": "#", "allow": True},
                {"acltype": "publishClientReceive", "topic": "#", "allow": True}]},
            {"command": "addClientRole", "username": "cam-a", "rolename": "mine", "priority": 99},
            {"command": "setDefaultACLAccess", "acls": [{"acltype": "subscribe", "allow": True},
                                                        {"acltype": "publishClientReceive", "allow": True}]}]}
        a.publish("$CONTROL/dynamic-security/v1", json.dumps(grab).encode())
        time.sleep(0.3)
        assert all(code.is_failure for code in a.subscribe(f"$share/{SHARE_GROUP}/vc/v1/+/up/#"))
        assert all(code.is_failure for code in a.subscribe("vc/v1/+/up/#"))
        for i in range(4):
            b.publish("vc/v1/cam-b/up/event", f"cam-b {i}".encode())
        assert len(gw.wait_for_count(4)) == 4
        time.sleep(0.3)
        assert a.messages == []
        assert "mine" not in (secure.dir / "data" / "dynamic-security.json").read_text()
    finally:
        for c in (gw, a, b):
            c.close()


def test_an_account_the_access_rules_do_not_know_can_do_nothing(secure):
    # Fail closed: a password line without a role (written by hand, or by an older version)
    # lets its holder connect and nothing more.
    from gateway.provisioning.brokerconf import read_passwd, write_passwd
    accounts = read_passwd(secure.dir / "passwd")
    accounts["cam-x"] = hash_password("cam-x's password")
    write_passwd(secure.dir / "passwd", accounts)
    assert reload_broker(secure.dir) == [secure.proc.pid]
    gw = gateway(secure)
    x = Client(secure, "cam-x", "cam-x's password", client_id="cam-x")
    assert x.connect()
    try:
        for topic in (f"$share/{SHARE_GROUP}/vc/v1/+/up/#", "vc/v1/cam-x/down/#", "#"):
            assert all(code.is_failure for code in x.subscribe(topic)), topic
        x.publish("vc/v1/cam-x/up/event", b"from an account without a role")
        a = device(secure, "cam-a")
        a.publish("vc/v1/cam-a/up/event", b"cam-a after it")
        assert gw.wait_for(b"cam-a after it") == [("vc/v1/cam-a/up/event", b"cam-a after it")]
        a.close()
    finally:
        gw.close()
        x.close()


def test_a_device_cannot_push_another_off_the_broker_by_taking_its_client_id(secure):
    a = device(secure, "cam-a")
    try:
        impostor = device(secure, "cam-b", client_id="cam-a")
        time.sleep(0.5)
        assert not a.disconnected.is_set(), "cam-b took cam-a's session"
        impostor.close()
    finally:
        a.close()


def test_an_oversized_packet_is_refused_before_it_reaches_the_gateway(secure):
    gw = gateway(secure)
    a = device(secure, "cam-a")
    try:
        a.c.publish("vc/v1/cam-a/up/capture", b"x" * 20000, qos=1)
        assert a.disconnected.wait(5), "the broker kept a client that sent a 20 kB packet"
        b = device(secure, "cam-b")
        b.publish("vc/v1/cam-b/up/event", b"after")
        assert gw.wait_for(b"after") == [("vc/v1/cam-b/up/event", b"after")]
        b.close()
    finally:
        gw.close()
        a.close()


def test_a_revoked_device_is_disconnected_and_refused_after_a_reload(secure):
    gw = gateway(secure)
    a = device(secure, "cam-a")
    password = secure.passwords["cam-a"]
    try:
        assert remove_device_account(secure.dir, "cam-a")
        assert reload_broker(secure.dir) == [secure.proc.pid]
        assert a.disconnected.wait(5), "a revoked device stayed connected after the reload"
        assert not Client(secure, "cam-a", password).connect()
        # Everyone else carries on.
        b = device(secure, "cam-b")
        b.publish("vc/v1/cam-b/up/event", b"still here")
        gw.wait_for(b"still here")
        b.close()
    finally:
        gw.close()
        a.close()


def test_our_password_hashes_are_the_format_mosquitto_writes(tmp_path):
    # Same shape as mosquitto_passwd's; that Mosquitto accepts ours is shown by every connect above.
    salt = bytes(range(12))
    line = hash_password("secret", salt)
    kind, iterations, b64salt, b64hash = line.split("$")[1:]
    assert (kind, iterations) == ("7", "101")
    import base64
    assert base64.b64decode(b64salt) == salt and len(base64.b64decode(b64hash)) == 64


@pytest.fixture
def dropped():
    """The production set-up: Mosquitto started as root drops to its own user, `mosquitto`."""
    import pwd
    import shutil
    import tempfile
    if os.geteuid() != 0:
        pytest.skip("needs root to start Mosquitto as root and let it drop to its own user")
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user on this machine")
    root = Path(tempfile.mkdtemp(prefix="vericam-broker-user-"))
    os.chmod(root, 0o755)  # mkdtemp is 0700: the dropped broker could not even look inside
    try:
        b = SecureBroker(root, run_as="mosquitto")
        os.chmod(b.dir, 0o755)
        for dev in ("cam-a", "cam-b"):
            b.add_device(dev)
        b.start()
        yield b
        b.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_revocation_reaches_a_broker_that_dropped_to_its_own_user(dropped):
    # The broker re-reads passwd on SIGHUP, and rewrites its access rules in data/, as
    # `mosquitto`: provisioning must keep those readable and writable by it.
    b = dropped
    a = device(b, "cam-a")
    remove_device_account(b.dir, "cam-a")
    b.add_device("cam-c")  # a device provisioned after the drop is accepted too
    assert reload_broker(b.dir) == [b.proc.pid]
    assert a.disconnected.wait(5), "the reload did not take: " + b.log()[-500:]
    assert not Client(b, "cam-a", b.passwords["cam-a"]).connect()
    device(b, "cam-c").close()
    a.close()


def test_a_broker_that_dropped_to_its_own_user_writes_its_log(dropped):
    # Mosquitto opens its log file after dropping to its user, and again on every SIGHUP
    # (log rotation): the file must be somewhere that user can create it.
    import pwd
    log = dropped.log_path()
    a = device(dropped, "cam-a")
    a.close()
    deadline = time.monotonic() + 5
    while "as cam-a" not in dropped.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.exists(), f"no broker log at {log}: Mosquitto could not create it as its own user"
    assert "as cam-a" in dropped.log(), dropped.log()[-500:]
    assert log.stat().st_uid == pwd.getpwnam("mosquitto").pw_uid
    log.rename(log.with_name(log.name + ".1"))  # what logrotate does before its SIGHUP
    assert reload_broker(dropped.dir) == [dropped.proc.pid]
    b = device(dropped, "cam-b")
    b.close()
    deadline = time.monotonic() + 5
    while "as cam-b" not in dropped.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "as cam-b" in dropped.log(), "no new log after the reload"
    assert dropped.passwords["cam-b"] not in dropped.log() + log.with_name(log.name + ".1").read_text()


def test_running_broker_config_again_keeps_the_ca_and_every_account(tmp_path):
    out = tmp_path / "broker"
    write_broker_config(out, hosts=["mq.example.net"], port=free_port(), local_port=None)
    password = add_device_account(out, "cam-a")
    before = {name: (out / name).read_bytes()
              for name in ("ca.pem", "ca.key", "passwd", "gateway.secret", "admin.secret")}
    port = free_port()
    write_broker_config(out, hosts=["mq.example.net", "mq2.example.net"], port=port, local_port=None,
                        max_queued=5000)
    for name, data in before.items():
        assert (out / name).read_bytes() == data, f"{name} changed"
    from cryptography import x509
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert names == ["mq.example.net", "mq2.example.net"], "the server certificate follows the new --host list"
    conf = (out / "mosquitto.conf").read_text()
    assert "max_queued_messages 5000" in conf and "allow_anonymous false" in conf
    assert [ln for ln in conf.splitlines() if ln.startswith("listener ")] == [f"listener {port} 0.0.0.0"]
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "admin.secret").stat().st_mode) == 0o600
    assert password not in (out / "passwd").read_text()
    rules = json.loads((out / "data" / "dynamic-security.json").read_text())
    assert "device-cam-a" in {role["rolename"] for role in rules["roles"]}, "the device kept its role"
    assert not [ln for ln in conf.splitlines() if ln.startswith("acl_file")], \
        "an acl_file would allow what the plugin leaves undecided"


def test_vericam_gateway_run_logs_in_to_the_locked_down_broker(secure, tmp_path):
    from gateway.provisioning.devices import init_arc

    data = tmp_path / "gw"
    init_arc(data)
    base = [VERICAM, "gateway", "run", "--data", str(data), "--broker", f"127.0.0.1:{secure.local_port}",
            "--username", GATEWAY_USER]
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-password\n")
    refused = subprocess.run(base + ["--password-file", str(wrong)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "could not connect" in refused.stderr
    assert "not-the-password" not in refused.stderr
    proc = subprocess.Popen(base + ["--password-file", str(secure.dir / "gateway.secret")],
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any("gateway running" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "gateway exited:\n" + "".join(lines)
            lines.append(line)
        assert secure.gateway_password not in "".join(lines)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
