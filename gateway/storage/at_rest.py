"""Images at rest: each JPEG sealed with AES-256-GCM under its own data key, that key wrapped by its deletion day's KEK.

A blob is `b"VCB1" || nonce(12) || AES-256-GCM(data_key, nonce, jpeg, aad=image id)`. The data
key is random per image and never stored in the clear: only wrapped (RFC 3394) under the KEK
of the image's deletion day in the key store (`gateway.storage.keystore`), or under a police
hold's KEK (`DAY/hold-N`). Destroying that KEK makes every copy of the blob unreadable,
backups included. The image id is the AAD, so a blob moved under another row does not open.
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage.errors import StoreError
from gateway.storage.keystore import KeyStore

BLOB_MAGIC = b"VCB1"
_NONCE = 12
_TAG = 16


def seal(keys: KeyStore, kek_day: str, image_id: str, jpeg: bytes) -> tuple[bytes, bytes]:
    """The blob of one image and its data key wrapped under `kek_day`'s KEK."""
    data_key = secrets.token_bytes(32)
    nonce = secrets.token_bytes(_NONCE)
    blob = BLOB_MAGIC + nonce + AESGCM(data_key).encrypt(nonce, jpeg, image_id.encode())
    return blob, keys.wrap(kek_day, data_key)


def unseal(keys: KeyStore, kek_day: str, wrapped_key: bytes, image_id: str, blob: bytes,
           sha256: str | None = None) -> bytes:
    """The JPEG in a blob. Raises `KeyDestroyed` once the KEK is gone, StoreError if the blob
    is not a Vericam blob or (given `sha256`) does not match the hash recorded at storage."""
    return open_blob(keys.unwrap(kek_day, bytes(wrapped_key)), image_id, blob, sha256)


def open_blob(data_key: bytes, image_id: str, blob: bytes, sha256: str | None = None) -> bytes:
    """The JPEG in a blob, under its unwrapped data key (see `unseal`)."""
    if blob[:4] != BLOB_MAGIC or len(blob) < 4 + _NONCE + _TAG:
        raise StoreError(f"blob of image {image_id} is not a Vericam blob: the file was replaced")
    jpeg = AESGCM(data_key).decrypt(blob[4:4 + _NONCE], blob[4 + _NONCE:], image_id.encode())
    if sha256 is not None and hashlib.sha256(jpeg).hexdigest() != sha256:
        raise StoreError(f"image {image_id} does not match its recorded hash")
    return jpeg


def rewrap(keys: KeyStore, from_kek: str, wrapped_key: bytes, to_kek: str) -> bytes:
    """The same data key, wrapped under `to_kek` instead of `from_kek` (a police hold, its release)."""
    data_key = keys.unwrap(from_kek, bytes(wrapped_key))
    try:
        return keys.wrap(to_kek, data_key)
    finally:
        del data_key
