"""The gateway's vector generator (tools/make_vectors.py) loaded once: the test ARC key, fixed-seed OAEP."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _load_make_vectors():
    """tools/ is not a package: load its script as the module `make_vectors`, once per process."""
    if "make_vectors" in sys.modules:
        return sys.modules["make_vectors"]
    spec = importlib.util.spec_from_file_location("make_vectors", ROOT / "tools" / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_vectors"] = module
    spec.loader.exec_module(module)
    return module


mv = _load_make_vectors()
