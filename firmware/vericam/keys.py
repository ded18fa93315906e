"""The device's message keys (PROTOCOL §1), split by HKDF from its provisioned device key."""

from vericam.hkdf import hkdf_sha256

DEVICE_KEY_SIZE = 32
INFO_UP = b"vericam v1 up mac"
INFO_DOWN = b"vericam v1 down mac"
INFO_EVENT = b"vericam v1 event enc"


class DeviceKeyError(ValueError):
    """The provisioned device key is unusable; re-provision the device."""


class DeviceKeys:
    """K_up (MAC of device -> gateway), K_down (MAC of gateway -> device), K_event (AES of events)."""

    def __init__(self, device_key):
        if len(device_key) != DEVICE_KEY_SIZE:
            raise DeviceKeyError("device key must be %d bytes, got %d"
                                 % (DEVICE_KEY_SIZE, len(device_key)))
        self.up = hkdf_sha256(device_key, b"", INFO_UP)
        self.down = hkdf_sha256(device_key, b"", INFO_DOWN)
        self.event = hkdf_sha256(device_key, b"", INFO_EVENT)

    def mac_key(self, msg_type):
        """The MAC key of an envelope type: K_up below 0x80, K_down from 0x80."""
        return self.up if msg_type < 0x80 else self.down
