"""Shared fixtures: a real Mosquitto with the project's config, and the MicroPython runner."""

import pytest

from simulator.broker import Broker


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as b:
        yield b
