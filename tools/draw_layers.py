#!/usr/bin/env python3
"""Draws the gateway's layers from its imports: a Mermaid graph of which sub-package imports which.

    python tools/draw_layers.py            # print the diagram
    python tools/draw_layers.py --write    # put it into docs/ARCHITECTURE.md between its markers

Every `import` and `from ... import` in gateway/ counts, also those inside functions, since
those are dependencies too. Each node is labelled with the first clause of its package's
docstring. tests/test_architecture.py checks that ARCHITECTURE.md holds the current drawing,
so the picture cannot drift from the code.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "gateway"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
BEGIN = "<!-- layers: drawn by tools/draw_layers.py; do not edit by hand -->"
END = "<!-- /layers -->"


def package_of(module: str) -> str | None:
    """`gateway.storage.store` -> `storage`; None for modules outside the gateway's sub-packages."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "gateway" else None


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def edges(root: Path = GATEWAY) -> dict[str, set[str]]:
    """{sub-package: sub-packages it imports}, for every sub-package of the gateway."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        if len(rel.parts) < 3:
            continue
        src = rel.parts[1]
        graph.setdefault(src, set())
        for target in imported_modules(path):
            dst = package_of(target)
            if dst and dst != src and (root / dst).is_dir():
                graph[src].add(dst)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports that comes back to where it started, or None if the layers are a DAG."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, path + [node])
            if found:
                return found
        done.add(node)
        return None

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return None


def label(package: str, root: Path = GATEWAY) -> str:
    doc = ast.get_docstring(ast.parse((root / package / "__init__.py").read_text())) or package
    first = doc.splitlines()[0].split(":")[0].rstrip(".")
    return f"{package}/<br/><small>{first}</small>".replace('"', "'").replace("`", "")


def mermaid(root: Path = GATEWAY) -> str:
    graph = edges(root)
    lines = ["```mermaid", "flowchart TD"]
    for pkg in sorted(graph):
        lines.append(f'    {pkg}["{label(pkg, root)}"]')
    for pkg in sorted(graph):
        for dst in sorted(graph[pkg]):
            lines.append(f"    {pkg} --> {dst}")
    lines.append("```")
    return "\n".join(lines)


def block(root: Path = GATEWAY) -> str:
    return f"{BEGIN}\n{mermaid(root)}\n{END}"


def write(doc: Path = DOC) -> bool:
    """Replace the drawing in the doc; True if it changed."""
    text = doc.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + block() + text[end:]
    if new != text:
        doc.write_text(new)
    return new != text


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        print("updated" if write() else "already current", DOC)
    else:
        print(mermaid())
