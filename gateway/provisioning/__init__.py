"""Putting devices into service: their keys and rows, the broker's locked-down configuration and accounts, the firmware tree."""
