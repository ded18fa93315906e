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


# Every class of personal data (issue 15), with short rules so that each one comes due in a month.
SHORT = dict(identity_days=5, note_days=3, hold_record_days=4, export_days=2, audit_days=10, batch=50)


def test_every_class_is_kept_to_its_rule_end_to_end_on_both_engines(tmp_path, engine):
    from gateway.governance.retention import RetentionPolicy
    from gateway.governance.retention_rules import RULES
    from gateway.storage import sqldb

    data = tmp_path / "gw"
    if engine:
        sqldb.bind(data, engine)
    r = simulate(days=30, data_dir=data, policy=RetentionPolicy(**SHORT))
    assert r["violations"] == 0 and r["audit_ok"], r
    assert set(r["classes"]) == {rule.data_class for rule in RULES}
    for cls, c in r["classes"].items():
        assert 0 < c["max_age_days"] <= c["rule_days"], (cls, c)
    assert r["identities_erased"] == 1 and r["notes_erased"] > 20 and r["exports_deleted"] > 3
    assert r["hold_records_deleted"] > 5 and r["audit_trimmed"] > 100 and r["relationships_ended"] == 1


def test_a_sweeper_that_forgets_a_class_is_caught(monkeypatch):
    from gateway.governance.retention import RetentionPolicy

    monkeypatch.setattr(retention.Sweeper, "_erase_identities", lambda self, now: 0)
    monkeypatch.setattr(retention.Sweeper, "_expire_exports", lambda self, now: 0)
    r = simulate(days=30, policy=RetentionPolicy(**SHORT))
    assert r["class_violations"] > 0 and r["violations"] > 0
    assert r["classes"]["customer_identity"]["max_age_days"] > 5 and r["classes"]["export"]["max_age_days"] > 2
