"""A built wheel is the whole product: installed away from the source tree, `vericam demo` plays the burglary.

The wheel is built from a copy of the files a release is made of (so no stale `build/` can
hide a missing file), checked for the device's firmware tree and the data files, installed
into a --target directory, and run from an empty working directory. Its dependencies come
from the test venv.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ["pyproject.toml", "setup.py", "README.md", "gateway", "simulator", "firmware"]
FIRMWARE_IN_WHEEL = "vericam_firmware"  # gateway.provisioning.firmware.PACKAGE


def source_files(top: str, pattern: str = "*") -> set[str]:
    """The files under ROOT/top (as wheel paths would name them), without bytecode caches."""
    return {p.relative_to(ROOT / top).as_posix() for p in (ROOT / top).rglob(pattern)
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if int(version("setuptools").split(".")[0]) < 77:
        pytest.fail("building the wheel needs setuptools>=77 in the test venv: pip install -e '.[dev]'",
                    pytrace=False)
    src = tmp_path_factory.mktemp("src")
    for name in RELEASE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(src)], check=True, timeout=300)
    [built] = out.glob("vericam-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    return target


def run_installed(installed: Path, cwd: Path, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(installed))
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_ships_the_firmware_tree_as_it_stands_and_the_data_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    firmware = {n.removeprefix(FIRMWARE_IN_WHEEL + "/") for n in names if n.startswith(FIRMWARE_IN_WHEEL + "/")}
    # Exactly the device's file tree: main.py, manifest.py and the vericam package, nothing added.
    assert firmware == source_files("firmware")
    assert {"main.py", "manifest.py", "vericam/__init__.py", "vericam/agent.py", "vericam/mqtt/client.py"} <= firmware
    for top, data in [("gateway", "console/templates"), ("gateway", "console/static"), ("simulator", "scenarios")]:
        expected = {f"{top}/{data}/{name}" for name in source_files(f"{top}/{data}")}
        assert expected and expected <= names, f"{top}/{data} is not package data"
    assert not [n for n in names if n.startswith(("tests/", "tools/", "firmware/"))]


def test_installed_vericam_finds_its_own_copy_of_everything(installed, tmp_path):
    done = run_installed(installed, tmp_path, sys.executable, "-c",
                         "import gateway, simulator.mpy\n"
                         "from gateway.provisioning.firmware import firmware_dir\n"
                         "print(gateway.__file__); print(simulator.mpy.FIRMWARE_DIR); print(firmware_dir())")
    assert done.returncode == 0, done.stderr
    gateway_init, simulator_firmware, gateway_firmware = map(Path, done.stdout.split())
    assert gateway_init.is_relative_to(installed)
    assert simulator_firmware == gateway_firmware == installed / FIRMWARE_IN_WHEEL


def test_installed_demo_plays_the_burglary_outside_the_source_tree(installed, tmp_path):
    done = run_installed(installed, tmp_path, str(installed / "bin" / "vericam"), "demo", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["images_at_arc"] > 0
    assert result["device_captures_left"] == 0
