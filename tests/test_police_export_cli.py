"""`vericam export CASE` writes the police bundle of a held alarm; `vericam export verify` catches any change."""

import os
import time
import zipfile

from gateway.governance import hold
from gateway.storage.store import Store

from support.cli import vericam
from support.seeding import make_gateway_dir, seed


def test_export_a_case_verify_it_and_detect_a_changed_photo(tmp_path):
    data = make_gateway_dir(tmp_path / "gw")
    jpegs = [b"\xff\xd8" + os.urandom(3000) + b"\xff\xd9" for _ in range(2)]
    alarm = os.urandom(8)
    with Store.open(data) as store:
        seed(store, "cam-1", alarm_id=alarm.hex(), jpegs=jpegs)
        hold.place(store, f"cam-1/{alarm.hex()}", "sam", "burglary investigation", "CASE-2026-17",
                   int(time.time() * 1000), role="supervisor")

    assert vericam("export", "CASE-2026-17", "--data", str(data), "--by", "sam").returncode == 2  # role missing
    assert vericam("export", "NO-SUCH-CASE", "--data", str(data), "--by", "sam",
                   "--role", "supervisor").returncode == 1
    done = vericam("export", "CASE-2026-17", "--data", str(data), "--by", "sam", "--role", "supervisor",
                   "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    [bundle] = sorted((tmp_path / "out").glob("*.zip"))
    with zipfile.ZipFile(bundle) as z:
        photos = sorted(n for n in z.namelist() if n.startswith("photos/"))
        assert sorted(z.read(n) for n in photos) == sorted(jpegs)
    ok = vericam("export", "verify", str(bundle))
    assert ok.returncode == 0, ok.stderr

    # A photo swapped inside the bundle no longer matches the manifest.
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(forged, "w") as dst:
        for name in src.namelist():
            data_ = src.read(name)
            dst.writestr(name, b"\xff\xd8forged\xff\xd9" if name == photos[0] else data_)
    bad = vericam("export", "verify", str(forged))
    assert bad.returncode == 1 and photos[0] in bad.stderr

    with Store.open(data) as store:
        exports = [r for r in store.db.execute("SELECT who, what FROM audit WHERE what = 'police export'")]
    assert [tuple(r) for r in exports] == [("sam", "police export")]
