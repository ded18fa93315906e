"""Which packages the wheel holds: the gateway, the simulator, and the device's firmware tree.

Everything else about the package is in pyproject.toml. This file exists for one thing that
file cannot say next to `packages.find`: a package whose directory has another name. The
firmware tree `firmware/` (`main.py`, `manifest.py`, the `vericam` package) ships under the
import name `vericam_firmware`, as a namespace package, so that `firmware/` stays the
device's file tree as it stands, with no `__init__.py` that a copy to a device would carry.
`gateway/provisioning/firmware.py` finds it, in an installed wheel and in a source checkout.
"""

from setuptools import find_namespace_packages, setup

FIRMWARE = "vericam_firmware"  # gateway.provisioning.firmware.PACKAGE

setup(
    packages=[*find_namespace_packages(include=["gateway*", "simulator*"]),
              FIRMWARE, *(f"{FIRMWARE}.{name}" for name in find_namespace_packages("firmware"))],
    package_dir={FIRMWARE: "firmware"},
)
