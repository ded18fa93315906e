"""The house, drawn from the code: only storage writes SQL, and the layers import one way.

- Only `gateway/storage/` holds SQL: no other Python module of the gateway, the simulator
  or the tools contains `SELECT`, `INSERT INTO`, `UPDATE ... SET`, `DELETE FROM` or
  `CREATE TABLE` (in code, strings or prose alike, as `grep -i` would find them).
- The command line and governance never import the web console.
- The gateway never imports the simulator or the firmware (DESIGN.md, "Shape").
- Storage is the bottom layer, above protocol: it imports nothing else of the gateway.

Imports are read with `ast`, so an import inside a function counts as much as one at the top.
Each rule is also run on a small module that breaks it, so a check that cannot fail fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM|CREATE TABLE)\b", re.IGNORECASE)


def python_files(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `module` imports, absolute, wherever in the file the import statement is."""
    out: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                prefix = ".".join(base)
                name = f"{prefix}.{node.module}" if node.module else prefix
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{alias.name}" for alias in node.names)  # `from gateway import console`
    return out


def sql_lines(source: str) -> list[str]:
    return [f"{n}: {line.strip()}" for n, line in enumerate(source.splitlines(), 1) if SQL.search(line)]


def breaks(imported: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported if any(m == f or m.startswith(f + ".") for f in forbidden))


def imports_of(path: Path) -> set[str]:
    return imported_modules(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")


# The rules -------------------------------------------------------------------------------------
def sql_outside_storage() -> dict[str, list[str]]:
    found = {}
    for path in python_files("gateway", "simulator", "tools"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("gateway/storage/"):
            continue
        lines = sql_lines(path.read_text(encoding="utf-8"))
        if lines:
            found[rel] = lines
    return found


def layer_violations(tops: tuple[str, ...], forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> dict:
    """Modules under `tops` that import a `forbidden` module (or, given `allowed`, any gateway module outside it)."""
    found = {}
    for path in python_files(*tops):
        imported = imports_of(path)
        bad = breaks(imported, forbidden)
        if allowed:
            bad += [m for m in breaks(imported, ("gateway",)) if m != "gateway" and not breaks({m}, allowed)]
        if bad:
            found[path.relative_to(ROOT).as_posix()] = sorted(set(bad))
    return found


def test_only_storage_writes_sql():
    assert sql_outside_storage() == {}, "move the query into a repository of gateway/storage/"


def test_the_command_line_and_governance_never_import_the_web_console():
    assert layer_violations(("gateway/cli", "gateway/governance"), ("gateway.console",)) == {}


def test_the_gateway_never_imports_the_simulator_or_the_firmware():
    assert layer_violations(("gateway",), ("simulator", "firmware", "vericam")) == {}


def test_storage_is_the_bottom_layer_above_protocol():
    found = layer_violations(("gateway/storage",), ("gateway.governance", "gateway.ingest", "gateway.console",
                                                    "gateway.cli", "gateway.provisioning"),
                             allowed=("gateway.storage", "gateway.protocol"))
    assert found == {}


# The checks catch what they are for ------------------------------------------------------------
@pytest.mark.parametrize("line", [
    'db.execute("SELECT 1 FROM images")',
    'sql = "insert into audit (seq) VALUES (?)"',
    'q = f"UPDATE devices SET revoked = 1"',
    '"delete from chunks WHERE device = ?"',
    'CREATE TABLE x (y INTEGER)',
])
def test_the_sql_check_finds_a_query(line):
    assert sql_lines(f"x = 1\n{line}\n") == [f"2: {line}"]


def test_the_sql_check_leaves_words_that_are_not_sql_alone():
    assert sql_lines("# the sweeper picks what is due, and an update of the key store sets it\n") == []


@pytest.mark.parametrize("source, module, forbidden", [
    ("from gateway.console.data import devices\n", "gateway.cli.export", ("gateway.console",)),
    ("def f():\n    from gateway.console import data\n", "gateway.governance.alarms", ("gateway.console",)),
    ("from gateway import console\n", "gateway.governance.alarms", ("gateway.console",)),
    ("import gateway.console.app as app\n", "gateway.cli.main", ("gateway.console",)),
    ("from ..console import data\n", "gateway.cli.export", ("gateway.console",)),
    ("import simulator.stack\n", "gateway.ingest.service", ("simulator",)),
    ("from vericam import envelope\n", "gateway.protocol.envelope", ("vericam",)),
    ("from gateway.governance import audit\n", "gateway.storage.devices", ("gateway.governance",)),
])
def test_the_import_check_finds_a_forbidden_import(source, module, forbidden):
    assert breaks(imported_modules(source, module), forbidden)


def test_the_import_check_allows_what_a_layer_may_use():
    imported = imported_modules("from gateway.storage import sqldb\nfrom gateway.protocol.keys import DeviceKeys\n"
                                "from . import at_rest\n", "gateway.storage.captures")
    assert breaks(imported, ("gateway.governance", "gateway.console")) == []
    assert "gateway.storage.at_rest" in imported


# The drawing of the layers in ARCHITECTURE.md ----------------------------------------------
def _draw_layers():
    import importlib.util

    spec = importlib.util.spec_from_file_location("draw_layers", ROOT / "tools" / "draw_layers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_architecture_md_draws_the_layers_as_the_imports_are():
    layers = _draw_layers()
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert layers.block() in doc, "docs/ARCHITECTURE.md's layer drawing is out of date: run python tools/draw_layers.py --write"


def test_the_gateway_layers_have_no_cycle():
    layers = _draw_layers()
    graph = layers.edges()
    assert {"storage", "protocol", "ingest", "governance", "provisioning", "console", "cli"} <= set(graph)
    assert layers.cycle(graph) is None, "the gateway's layers import in a circle: " + " -> ".join(layers.cycle(graph))


def test_the_cycle_check_sees_a_cycle(tmp_path):
    layers = _draw_layers()
    for pkg, imports in {"a": "gateway.b.x", "b": "gateway.c.y", "c": "gateway.a.z"}.items():
        (tmp_path / "gateway" / pkg).mkdir(parents=True)
        (tmp_path / "gateway" / pkg / "__init__.py").write_text(f'"""{pkg}."""\n')
        (tmp_path / "gateway" / pkg / "m.py").write_text(f"import {imports}\n")
    graph = layers.edges(tmp_path / "gateway")
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert layers.cycle(graph) == ["a", "b", "c", "a"]
    assert layers.cycle({"a": {"b"}, "b": set()}) is None
