"""The retention benchmark runs and reports its figures against raw unlink (small sizes here;
`vericam retention bench --json` defaults to 100k expired of 1M stored)."""

import json

from support.cli import vericam


def test_the_retention_bench_reports_the_sweep_against_raw_unlink():
    out = vericam("retention", "bench", "--stored", "3000", "--expired", "500", "--batch", "100",
                  "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(r)
    assert r["expired"] == 500 and r["batches"] == 5 and r["keks_destroyed"] == ["2026-05-31"]
    for k in ("sweep_s", "raw_unlink_s", "sweep_vs_raw_unlink", "empty_sweep_ms", "empty_sweep_vs_raw_unlink"):
        assert r[k] > 0
