"""`vericam bench wire-privacy`: how well a watcher at the broker tells a duress disarm from a normal one.

The classifiers and the cross-validation are checked on made-up data (a telling feature is
found, noise scores about chance, the nested choice never sees the episodes it is scored
on), the features on a hand-made wire log, and the whole benchmark once with a few disarms
of each kind and a short hold window: its JSON has every figure, and the accuracy is
computed (its value is what issue 13 is about, not what this test checks).
"""

import json
import random

import pytest

from simulator.bench import wire_privacy
from simulator.bench.wire_privacy import (CLASSIFIERS, KINDS, WINDOW_S, features, nested_cross_validate, score,
                                          stratified_folds)

from support.cli import vericam


def made_up(n: int, telling: bool, seed: int = 5) -> tuple[list[dict], list[int]]:
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    rows = [{"size": rng.gauss(3.0 * label if telling else 0.0, 0.3), "noise": rng.gauss(0, 1), "flat": 7.0}
            for label in labels]
    return rows, labels


def test_a_feature_that_tells_the_kinds_apart_is_found_by_every_classifier(monkeypatch):
    monkeypatch.setattr(wire_privacy, "SHUFFLES", 1)  # the baseline's shuffles are not what this checks
    rows, labels = made_up(40, telling=True)
    result = score(rows, labels, seed=1)
    assert result["classifier_accuracy"] == 1.0
    assert sum(result["chosen_by_inner_folds"].values()) == result["folds"] == 10
    assert set(result["classifiers"]) == set(CLASSIFIERS)
    assert all(acc >= 0.95 for acc in result["classifiers"].values()), result["classifiers"]
    assert next(iter(result["per_feature_threshold"])) == "size"
    assert result["per_feature_threshold"]["flat"] == 0.5


def test_noise_scores_about_chance_and_so_does_the_shuffled_label_baseline(monkeypatch):
    monkeypatch.setattr(wire_privacy, "SHUFFLES", 2)
    rows, labels = made_up(40, telling=False)
    result = score(rows, labels, seed=1)
    assert result["classifier_accuracy"] <= 0.75
    assert all(acc <= 0.75 for acc in result["classifiers"].values()), result["classifiers"]
    assert result["shuffled_labels_accuracy"] <= 0.75
    assert len(result["shuffled_labels_accuracies"]) == wire_privacy.SHUFFLES
    assert result["per_feature_threshold"]["flat"] == 0.5  # learned nothing: exactly chance


def test_the_nested_choice_never_sees_the_episodes_it_is_scored_on(monkeypatch):
    # One candidate that notes which episodes (column 0 numbers them) each fit trains on:
    # for every outer fold, inner cross-validation fits and then the final fit, in order.
    rows, labels = made_up(40, telling=True)
    X = [[i, r["size"], r["noise"]] for i, r in enumerate(rows)]
    seen: list[set[int]] = []

    def spy(train_X, train_y):
        seen.append({int(x[0]) for x in train_X})
        return CLASSIFIERS["threshold"](train_X, train_y)
    monkeypatch.setattr(wire_privacy, "candidates", lambda: {"spy": spy})
    folds = stratified_folds(labels, seed=2)
    accuracy, chosen = nested_cross_validate(X, labels, folds, seed=2)
    assert chosen == {"spy": len(folds)} and accuracy == 1.0
    per_outer = len(seen) // len(folds)
    assert per_outer == wire_privacy.INNER_FOLDS + 1 and len(seen) == per_outer * len(folds)
    for n, test in enumerate(folds):
        fits = seen[n * per_outer:(n + 1) * per_outer]
        assert all(not (trained & set(test)) for trained in fits), f"outer fold {n} was seen while choosing"
        assert fits[-1] == set(range(40)) - set(test)  # the winner is trained on the whole training side


def test_folds_are_stratified_and_cover_every_episode_once():
    labels = [0] * 20 + [1] * 20
    folds = stratified_folds(labels, seed=3)
    assert len(folds) == 10
    assert sorted(i for fold in folds for i in fold) == list(range(40))
    assert all(sum(labels[i] for i in fold) == 2 and len(fold) == 4 for fold in folds)
    assert len(stratified_folds([0, 1, 0, 1, 0, 1, 0, 1], seed=3)) == 4


def test_features_are_the_watchers_view_of_one_window():
    log = [
        {"t": 100.0, "topic": "vc/v1/home-1/up/event", "bytes": 172, "qos": 1, "retain": False},
        {"t": 101.0, "topic": "vc/v1/home-1/up/capture", "bytes": 2200, "qos": 1, "retain": False},
        {"t": 101.5, "topic": "vc/v1/home-1/up/capture", "bytes": 2200, "qos": 1, "retain": False},
        {"t": 103.0, "topic": "vc/v1/home-1/down/receipt", "bytes": 110, "qos": 1, "retain": False},
        {"t": 150.0, "topic": "vc/v1/home-1/up/heartbeat", "bytes": 92, "qos": 0, "retain": False},
    ]
    f = features(log, start=95.0)
    assert (f["messages"], f["bytes"], f["max_size"], f["distinct_sizes"]) == (5, 4774, 2200, 4)
    assert (f["capture_messages"], f["capture_bytes"], f["event_messages"], f["receipt_messages"]) == (2, 4400, 1, 1)
    assert (f["downlink_messages"], f["qos0_messages"], f["retained_messages"]) == (1, 1, 0)
    assert (f["size_0_128"], f["size_128_256"], f["size_2048_4096"]) == (2, 1, 2)
    assert (f["first_message_s"], f["last_message_s"], f["span_s"], f["max_gap_s"]) == (5.0, 55.0, 50.0, 47.0)
    assert (f["max_messages_in_5s"], f["max_bytes_in_5s"]) == (4, 4682)
    assert (f["event_to_upload_s"], f["upload_span_s"], f["upload_to_receipt_s"]) == (1.0, 0.5, 1.5)
    assert f["max_heartbeat_gap_s"] == 0.0  # one heartbeat, no gap
    empty = features([], start=0.0)
    assert empty["messages"] == 0 and empty["first_message_s"] == WINDOW_S
    assert empty["event_to_upload_s"] == empty["upload_to_receipt_s"] == WINDOW_S


@pytest.mark.timeout(600)
def test_the_benchmark_plays_both_kinds_and_reports_its_figures(tmp_path):
    # 3 + 3 disarms (the fewest nested cross-validation scores) with a 30 s hold window
    # instead of 5 minutes: each episode's window is 150 scenario seconds, not 420.
    log = tmp_path / "wire.jsonl"
    proc = vericam("bench", "wire-privacy", "--runs", "3", "--seed", "3", "--hold-window", "30", "--json",
                   "--wire-log", log, timeout=580)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["runs"] == 6 and result["runs_by_kind"] == {"normal": 3, "duress": 3}
    assert result["runs_scored"] == 6, result["runs_failed"]
    assert (result["hold_window_s"], result["window_s"]) == (30.0, 150.0)
    assert isinstance(result["duress_windows_without_upload"], int)
    assert isinstance(result["classifier_accuracy"], float) and 0.0 <= result["classifier_accuracy"] <= 1.0
    assert sum(result["chosen_by_inner_folds"].values()) == result["folds"] == 3
    assert set(result["classifiers"]) == set(CLASSIFIERS)
    assert result["best_single_classifier_accuracy"] == max(result["classifiers"].values())
    assert result["features"] == len(result["per_feature_threshold"])
    assert 0.0 <= result["shuffled_labels_accuracy"] <= 1.0
    assert isinstance(result["cover_bytes_per_disarm"], (int, float)) and result["cover_bytes_per_disarm"] >= 0
    assert set(result["device_bytes_per_disarm"]) == set(KINDS)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == result["wire_messages"] > 0
    assert all(set(line) == {"t", "topic", "bytes", "qos", "retain"} for line in lines)
    # Both kinds went through the real stack: every disarm, normal (its cover) or duress
    # (its photos), put a delivery on the capture topic before the next disarm.
    disarms = [e["t_disarm"] for e in result["episodes"]] + [float("inf")]
    uploads = [line["t"] for line in lines if line["topic"].endswith("/up/capture")]
    for kind, start, end in zip([e["kind"] for e in result["episodes"]], disarms, disarms[1:]):
        assert any(start <= t < end for t in uploads), f"a {kind} disarm at {start} s uploaded nothing"


def test_the_drawing_has_a_row_per_disarm_and_a_mark_per_message(tmp_path):
    import importlib.util
    import xml.etree.ElementTree as ET
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("draw_wire", Path(__file__).parents[1] / "tools" / "draw_wire.py")
    draw_wire = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(draw_wire)
    main = draw_wire.main

    log = [{"t": t, "topic": f"vc/v1/home-1/{leaf}", "bytes": size, "qos": 1, "retain": False}
           for t, leaf, size in [(10.0, "up/event", 347), (30.0, "up/capture", 2139), (33.0, "down/receipt", 109),
                                 (510.0, "up/event", 347), (531.0, "up/capture", 2139), (560.0, "up/heartbeat", 77)]]
    result = {"episodes": [{"kind": "normal", "t_open": 0.0}, {"kind": "duress", "t_open": 500.0},
                           {"kind": "duress", "t_open": 900.0, "failed": "did not settle"}],
              "runs_by_kind": {"normal": 1, "duress": 2}, "seed": 1, "window_s": 420.0,
              "classifier_accuracy": 0.5, "shuffled_labels_accuracy": 0.5}
    (tmp_path / "r.json").write_text(json.dumps(result))
    (tmp_path / "w.jsonl").write_text("\n".join(json.dumps(r) for r in log))
    assert main([str(tmp_path / "r.json"), str(tmp_path / "w.jsonl"), str(tmp_path / "out.svg")]) == 0
    svg = ET.parse(tmp_path / "out.svg").getroot()
    marks = [e for e in svg.iter("{http://www.w3.org/2000/svg}line") if e.get("stroke")]
    # The normal row shows the first three messages, the duress row the last three; the
    # failed disarm has no row.
    assert [m.get("stroke") for m in marks] == ["#d62728", "#1f77b4", "#2ca02c", "#d62728", "#1f77b4", "#7f7f7f"]
    rows = [e for e in svg.iter("{http://www.w3.org/2000/svg}line") if e.get("class") == "base"]
    assert len(rows) == 2
    assert main([str(tmp_path / "missing.json"), str(tmp_path / "w.jsonl"), str(tmp_path / "x.svg")]) == 2
