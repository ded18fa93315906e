"""The docs name only code that exists: every module path and test they cite is in the tree.

A doc that points a reader at `gateway/store.py` after the store moved sends them nowhere, so
every `gateway/`, `simulator/`, `firmware/`, `tests/` or `tools/` path to a `.py` file in
README.md and docs/*.md must exist (a glob such as `tests/test_gateway_*.py` must match a
file), and every test a doc cites as `tests/test_x.py::test_name`, or as `::test_name`
after such a path on the same line, must be defined in that file.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CITED = re.compile(r"\b(?:gateway|simulator|firmware|tests|tools)/[\w./*-]*[\w*]\.py\b(?:::\w+)?"
                   r"|(?<![\w/.])::test_\w+")


def broken_references(text: str, doc: str) -> list[str]:
    broken = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{doc}:{number}"
        path = None
        for match in CITED.finditer(line):
            cited = match.group(0)
            if cited.startswith("::"):
                name = cited[2:]
                if path is None:
                    broken.append(f"{where}: {cited} follows no test file")
                    continue
            else:
                path, _, name = cited.partition("::")
            files = sorted(ROOT.glob(path)) if "*" in path else [ROOT / path]
            if not all(f.is_file() for f in files) or not files:
                broken.append(f"{where}: {path} does not exist")
            elif name and not re.search(rf"^\s*(?:async\s+)?def {name}\(", files[0].read_text(), re.M):
                broken.append(f"{where}: {path} defines no {name}")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_module_and_test_a_doc_names_exists(doc):
    broken = broken_references(doc.read_text(), doc.name)
    assert not broken, "the doc names code that is not there:\n" + "\n".join(broken)


def test_the_check_catches_a_moved_module_and_a_renamed_test():
    text = ("Moved: `gateway/store.py`. Renamed: `tests/test_docs.py::test_that_is_gone`, but\n"
            "`tests/test_docs.py::test_every_module_and_test_a_doc_names_exists`, "
            "`::test_the_check_catches_a_moved_module_and_a_renamed_test` and `tests/test_doc*.py` are there;\n"
            "`tests/test_nothing_*.py` matches nothing,\n"
            "and `::test_docs` follows no file on its line.\n")
    assert broken_references(text, "probe.md") == [
        "probe.md:1: gateway/store.py does not exist",
        "probe.md:1: tests/test_docs.py defines no test_that_is_gone",
        "probe.md:3: tests/test_nothing_*.py does not exist",
        "probe.md:4: ::test_docs follows no test file",
    ]
