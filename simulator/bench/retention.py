"""Benchmark of the sweeper: sweep `expired` images out of `stored`, against unlinking the same files raw.

Rows are inserted straight into a real store (SQLite, WAL; `Images.insert`) with a small blob file each, so the
figures are the sweeper's own cost: index query, truncate + unlink, directory fsync, row
delete and one audit record per image, then the KEK destruction. The baseline, measured in
the same run and on the same disk, is `os.unlink` of as many files of the same size. Figures
are printed, never asserted on: a ratio says how much the sweeper's bookkeeping adds.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import tempfile
import time
from pathlib import Path

from gateway.governance.retention import RetentionPolicy, Sweeper
from gateway.storage.captures import ImageRow
from gateway.storage.store import Store

BLOB = b"VCB1" + bytes(60)


def _fill(store: Store, n: int, day: str, chunk: int = 20_000) -> None:
    d = store.blob_dir / day
    d.mkdir(parents=True, exist_ok=True)
    store.keys.kek(day)
    done = 0
    while done < n:
        k = min(chunk, n - done)
        rows = []
        for _ in range(k):
            i = secrets.token_hex(16)
            rel = f"blobs/{day}/{i}.vcb"
            with open(store.data_dir / rel, "wb") as f:
                f.write(BLOB)
            rows.append(ImageRow(i, "bench", "c", "a", 0, 0, "0" * 64, 64, rel, day, b"\x00", 0))
        with store.transaction():
            store.images.insert(rows)
        done += k


def bench(stored: int = 1_000_000, expired: int = 100_000, batch: int = 1000, workdir: str | None = None,
          progress=lambda line: None) -> dict:
    with tempfile.TemporaryDirectory(prefix="vericam-retbench-", dir=workdir) as tmp:
        data = Path(tmp) / "gw"
        store = Store.open(data)
        try:
            now = int(_dt.datetime(2026, 6, 1, tzinfo=_dt.timezone.utc).timestamp() * 1000)
            progress(f"filling {stored} images ({expired} expired) ...")
            t = time.perf_counter()
            _fill(store, expired, "2026-05-31")
            _fill(store, stored - expired, "2026-06-05")
            # Baseline files: as many, as large, on the same disk, created at the same stage.
            raw_dir = Path(tmp) / "raw"
            raw_dir.mkdir()
            names = [raw_dir / f"{i}.vcb" for i in range(expired)]
            for p in names:
                with open(p, "wb") as f:
                    f.write(BLOB)
            fill_s = time.perf_counter() - t
            os.sync()  # both start from clean pages: neither pays for the other's writeback
            sweeper = Sweeper(store, RetentionPolicy(batch=batch), clock=lambda: now / 1000)

            # Nothing expired yet (a day earlier): one index probe, whatever is stored.
            early = Sweeper(store, RetentionPolicy(batch=batch), clock=lambda: (now - 2 * 86_400_000) / 1000)
            t = time.perf_counter()
            for _ in range(10):
                early.sweep()
            empty_s = (time.perf_counter() - t) / 10

            progress("sweeping ...")
            t = time.perf_counter()
            rep = sweeper.sweep()
            sweep_s = time.perf_counter() - t
            assert rep.images_deleted == expired, rep

            # Baseline: raw unlink of as many files of the same size, same disk, same run.
            os.sync()
            t = time.perf_counter()
            for p in names:
                os.unlink(p)
            raw_s = time.perf_counter() - t
            return {"stored": stored, "expired": expired, "batch": batch, "fill_s": round(fill_s, 3),
                    "sweep_s": round(sweep_s, 3), "sweep_per_image_us": round(sweep_s / expired * 1e6, 1),
                    "raw_unlink_s": round(raw_s, 3), "sweep_vs_raw_unlink": round(sweep_s / raw_s, 2),
                    "empty_sweep_ms": round(empty_s * 1000, 3),
                    "empty_sweep_vs_raw_unlink": float(f"{empty_s / raw_s:.3g}"),
                    "keks_destroyed": rep.keks_destroyed, "batches": rep.batches}
        finally:
            store.close()
