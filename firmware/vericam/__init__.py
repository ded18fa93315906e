"""Vericam device agent: seals photos at the lens and delivers them to the ARC on an alarm.

This package is the device's file tree; it runs on MicroPython (ESP32 or the unix port)
and uses only MicroPython's built-in modules. The wire protocol it speaks is
docs/PROTOCOL.md.
"""

FW_VERSION = "0.1.0"
