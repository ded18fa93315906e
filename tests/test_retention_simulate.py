"""Time travel: 40 simulated days of alarms, holds and releases keep every rule, hour by hour;
and the checks do catch a sweeper that forgets to shred or to delete."""

import json

from gateway.governance import retention
from gateway.storage import retention as retention_queries
from simulator.bench.retention_sim import simulate

from support.cli import vericam


def test_forty_days_under_the_rules():
    out = vericam("retention", "simulate", "--days", "40", "--json", timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(r)
    assert r["violations"] == 0 and r["orphans"] == 0 and r["decryptable_after_expiry"] == 0
    assert 6 < r["max_age_days_unheld"] <= 7 and 29 < r["max_age_days_held"] <= 30
    assert r["holds_placed"] > 10 and r["holds_released"] > 5 and r["keks_destroyed"] > 30
    assert r["audit_ok"]


def test_a_sweeper_that_never_shreds_is_caught(monkeypatch):
    monkeypatch.setattr(retention.Sweeper, "_destroy_spent_keks", lambda self, now: [])
    r = simulate(days=12)
    assert r["decryptable_after_expiry"] > 0 and r["violations"] > 0


def test_a_sweeper_that_falls_behind_is_caught(monkeypatch):
    monkeypatch.setattr(retention_queries, "DUE_SQL",
                        retention_queries.DUE_SQL.replace("delete_at_ms <= ?", "delete_at_ms <= ? - 86400000"))
    r = simulate(days=12)
    assert r["max_age_days_unheld"] > 7 and r["violations"] > 0
