"""The ingest benchmark runs on real parts and accounts for every capture (figures are printed, not asserted)."""

from simulator.bench.ingest import run_ingest


def test_bench_ingest_stores_every_capture_once_and_reports_the_ratio():
    result = run_ingest(captures=30, devices=30, workers=(1, 2))
    assert result["baseline"]["images_per_s"] > 0
    for run in result["runs"]:
        assert run["lost"] == 0 and run["duplicates"] == 0
        assert run["ratio_to_baseline"] > 0
    assert "scaling_2_vs_1" in result


def test_bench_ingest_runs_the_gateway_on_postgresql_and_accounts_for_every_capture(pg_database):
    result = run_ingest(captures=20, devices=20, workers=(2,), db=pg_database)
    assert result["storage"] == "postgresql+files"
    [run] = result["runs"]
    assert run["lost"] == 0 and run["duplicates"] == 0 and run["ratio_to_baseline"] > 0
