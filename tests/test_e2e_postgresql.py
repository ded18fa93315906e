"""A burglary, end to end, with the gateway's metadata in a real PostgreSQL (`vericam gateway run --db`).

Mosquitto, the gateway process and the firmware on real MicroPython, as in test_e2e_burglary;
only the metadata engine differs. The photos must reach the ARC, read back identical, and the
device must get its receipts and delete its copies, with no SQLite file in the data directory.
"""

import hashlib

import psycopg
import pytest

from simulator.demo import DEVICE, play_burglary
from simulator.flash import vault_listing
from simulator.stack import Stack


@pytest.fixture
def stack(tmp_path, pg_url):
    with Stack(tmp_path / "run", db_url=pg_url) as s:
        yield s


def test_burglary_with_the_gateway_on_postgresql_delivers_the_photos_and_the_receipts(stack, pg_url):
    dev = stack.add_device(DEVICE)
    dev.boot()
    result = play_burglary(stack)

    camera = [jpeg for trigger, _i, jpeg in dev.frames if trigger == "intrusion"]
    assert len(camera) == 3 and result["images_at_arc"] == 3 and result["receipts"] >= 1
    at_arc = stack.read_images(DEVICE)
    assert sorted(hashlib.sha256(j).digest() for j in at_arc) == sorted(hashlib.sha256(j).digest() for j in camera)

    # The receipts arrived: the device deleted every sealed copy.
    dev.stop()
    assert vault_listing(dev.flash_path) == {"captures": [], "states": [], "debris": []}

    # The rows are in PostgreSQL, and nowhere else.
    assert not (stack.gateway_dir / "vericam.sqlite").exists()
    with psycopg.connect(pg_url) as conn:
        images = conn.execute("SELECT count(*) FROM images WHERE device = %s", (DEVICE,)).fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM captures WHERE device = %s AND status = 'stored' "
                              "AND stored_at_ms IS NOT NULL", (DEVICE,)).fetchone()[0]
        kinds = {r[0] for r in conn.execute("SELECT kind FROM events WHERE device = %s", (DEVICE,))}
    assert images == 3 and stored >= 1 and {"armed", "alarm"} <= kinds
    assert "metadata: postgresql" in stack.gateway_log()
