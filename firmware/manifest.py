# Freezes the Vericam agent into a MicroPython ESP32 build (the other way onto a board is
# copying firmware/ with mpremote, see tools/flash and the README).
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/vericam/firmware/manifest.py
#
# With the cnadler86 camera module (the camera driver hal_esp32 targets) add
# USER_C_MODULES=/path/to/micropython-camera-API/src/micropython.cmake to that line.
# Frozen code runs from flash, so the agent costs no RAM for its bytecode.

# The board's own modules (asyncio, network, ...) and boot scripts.
include("$(PORT_DIR)/boards/manifest.py")

# micropython-lib modules that the ESP32 HAL uses.
require("ntptime")

# The agent: main.py runs it at boot, the vericam package is everything else.
module("main.py")
package("vericam")
