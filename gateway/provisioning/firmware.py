"""Where the device's firmware tree is: the one lookup for everything that copies or runs the agent.

The tree is `firmware/` in a source checkout: `main.py`, `manifest.py` and the `vericam`
package, exactly as they go onto a device. The wheel ships it under the import name
`vericam_firmware` (see setup.py), a namespace package, so that `firmware/` itself needs no
`__init__.py` that a copy to a device would carry. An editable install maps that name onto
the checkout's `firmware/`, a regular install onto `site-packages/vericam_firmware/`; so one
import-spec lookup finds the tree in both, and never imports any of its code into CPython.

Provisioning uses it for `--with-firmware` flash images, and the simulator (which may use
the gateway, never the other way round) for the tree it runs on MicroPython.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "vericam_firmware"  # the import name setup.py gives firmware/ in the wheel


class FirmwareNotFound(RuntimeError):
    """No firmware tree where vericam was installed from: reinstall it."""


def firmware_dir() -> Path:
    """The directory that holds the device's `main.py` and `vericam/` package."""
    spec = importlib.util.find_spec(PACKAGE)
    # A namespace package may have several portions (and an editable install adds a
    # placeholder entry): the tree is the first one that has the agent in it.
    for where in (spec.submodule_search_locations or []) if spec else []:
        path = Path(where)
        if (path / "main.py").is_file() and (path / "vericam" / "__init__.py").is_file():
            return path
    raise FirmwareNotFound(
        f"the device firmware tree (import name {PACKAGE!r}) is not installed: reinstall vericam "
        "(`pip install .`, or `pip install -e .` in a source checkout, whose firmware/ it then uses)")
