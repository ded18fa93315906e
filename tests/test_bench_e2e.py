"""The end-to-end benchmark runs and reports its figures against the same-run baseline (no timing asserts)."""

from simulator.bench.e2e import percentile, run_e2e


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5


def test_bench_e2e_reports_latency_baseline_and_ratio():
    result = run_e2e(runs=2)
    assert result["runs"] == 2
    for key in ("p50", "p95"):
        assert result["alarm_to_stored_ms"][key] > 0
        assert result["raw_mqtt_round_trip_ms"][key] > 0
    assert result["ratio_p50"] > 0
    assert result["sealed_capture_bytes_p50"] > 3 * 20 * 1024
