"""Provisioning: the ARC key pair of a gateway and the keys of the devices it accepts.

Registering and revoking a device are configuration changes: each is audited, with the OS user
who ran the command as who.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import time
from pathlib import Path

from gateway.storage.blobstore import BlobConfig, configure, key_of, open_blobstore
from gateway.storage.keystore import KeyStore
from gateway.governance import audit
from gateway.storage.store import Store


def init_arc(data_dir: str | Path) -> dict:
    """Create the data directory, its schema, the ARC key pair and the audit key if missing.

    Returns {"created": bool, "arc_key_id": hex, "arc_n": hex, "arc_e": int, "database": str,
    "schema_version": int}."""
    data_dir = Path(data_dir)
    with Store.open(data_dir) as store:
        created = store.keys.create_arc_key()
        audit.key_the_trail(store)  # an existing data directory gets its audited switch-over record
        pub = store.keys.arc_private_key().public_key().public_numbers()
        return {"created": created, "arc_key_id": store.keys.arc_key_id().hex(),
                "arc_n": format(pub.n, "x"), "arc_e": pub.e, "database": store.db.describe(),
                "schema_version": store.schema_version()}


def configure_blobs(data_dir: str | Path, config: BlobConfig) -> str:
    """Check that blobs can be stored where `config` says, then record it in DATA/blobs.toml.

    Refuses (BlobStoreError) a bad URL, an unreachable store, a missing bucket, wrong
    credentials, or moving a data directory that already has images. A new worker's data
    directory on a shared PostgreSQL database that already has images may name the place
    where those images are: its first image's blob must be there. Returns where blobs go."""
    config = config.validate()
    with Store.open(data_dir) as store:
        first = store.images.first_blob_path()
    blobs = open_blobstore(data_dir, config)
    try:
        blobs.check()
        where = blobs.describe()
        elsewhere = first is not None and not blobs.exists(key_of(first))
    finally:
        blobs.close()
    configure(data_dir, config, elsewhere)
    return where


def arc_public(keys: KeyStore) -> dict:
    pub = keys.arc_private_key().public_key().public_numbers()
    return {"arc_n": format(pub.n, "0512x"), "arc_e": pub.e, "arc_key_id": keys.arc_key_id().hex()}


def add_device(data_dir: str | Path, device_id: str, site: str) -> dict:
    """Provision one device: a fresh random device key, stored (wrapped) at the gateway.

    Returns the device's config dict {"device_id", "site", "device_key" (hex), "arc_n" (hex),
    "arc_e", "arc_key_id" (hex)}. It holds the device key: write it only to a 0600 file."""
    from gateway.protocol.envelope import valid_device_id

    if not valid_device_id(device_id):
        raise ValueError(f"device id {device_id!r} must match [a-z0-9-]{{1,32}} (it is also the MQTT user name)")
    init_arc(data_dir)
    device_key = secrets.token_bytes(32)
    with Store.open(data_dir) as store:
        register_device(store, device_id, site, device_key)
        return {"device_id": device_id, "site": site, "device_key": device_key.hex(), **arc_public(store.keys)}


def register_device(store: Store, device_id: str, site: str, device_key: bytes) -> None:
    """Accept a device with this key from now on (audited). StoreError if the id is taken."""
    now = _now_ms()
    with store.transaction():
        store.devices.add(device_id, site, device_key, now)
        _audit_config(store, "device provisioned", device_id, {"site": "set"}, now)  # an address: not kept in the trail


def revoke_device(store: Store, device_id: str) -> bool:
    """Refuse the device's messages from now on (audited); False if it is not provisioned here."""
    now = _now_ms()
    with store.transaction():
        done = store.devices.revoke(device_id)
        if done:
            _audit_config(store, "device revoked", device_id, {}, now)
        return done


def _audit_config(store: Store, why: str, device_id: str, detail: dict, now: int) -> None:
    """Configuration changes made from the command line: the OS user is who."""
    audit.append(store, f"os:{getpass.getuser()}", "configure device", why, at_ms=now, subject=device_id,
                 detail=detail)


def _now_ms() -> int:
    return int(time.time() * 1000)


def write_config(path: str | Path, config: dict) -> None:
    """Write a device config (it holds the device key) with mode 0600."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.chmod(path, 0o600)
