"""Can someone watching the broker tell a duress disarm from a normal one? (issue 13; rule 8 of the design)

`run_wire_privacy(runs)` plays `runs` normal disarms and `runs` duress disarms, in random
order, on one stack: the real firmware on MicroPython, Mosquitto with the project's
configuration, the gateway process. Each episode is a homecoming: a user arms, later the
door opens (the entry delay starts), and within the entry delay someone disarms with a
user's PIN or with the duress PIN. The household's timings (how long it is out, how long
from the door to the keypad) are drawn once per pair of episodes and played once with each
kind: drawn for each episode, 20 + 20 of them can differ by chance, and a feature timed from
the door opening then tells the household's luck, not the wire (seed 31, drawn per episode:
a median of 23.9 s from door to keypad for the duress disarms, 11.7 s for the normal ones,
and `first_message_s` alone scored 0.725). The broker's read-only observer account
(`simulator.broker.WireObserver`) logs every message, and each episode's wire is cut out as
a window of `WINDOW_S` scenario seconds from the door opening (the 5-minute hold window
and 2 minutes more; `hold_window_s` shortens both, for a quick check of the benchmark
itself, never for its figures): the same length for both kinds, so the window itself tells nothing (`duress_windows_without_upload` counts duress
disarms whose upload the window missed; it should be 0).

From each window the watcher's features are taken (message counts and bytes per topic kind,
a histogram of sizes, timing: first message, span, gaps, bursts, the upload's delay after
the disarm event, its span, the receipt's delay after it, the longest heartbeat gap), and
several simple
classifiers, written here in plain Python, are tried:

- `threshold`: a decision stump, one threshold on one feature, the feature chosen on the
  training side;
- `nearest_centroid`, `knn_3`: on standardised features;
- `logistic_regression`: gradient descent with a little L2;
- `gaussian_naive_bayes`;

and each of the last four also on only the `TOP_K` features that tell most on its training
side (`knn_3_top3`, ...), since a few telling features drown among thirty that tell nothing.

Folds are stratified (k = 10, or the runs of one kind when fewer: each fold holds out as
many episodes of each kind, so the training side stays balanced and a classifier that
learned nothing scores 0.5, where leave-one-out would score it 0).

`classifier_accuracy`, the headline, is "the best simple classifier" scored by nested
cross-validation. Taking the best of several cross-validated accuracies is biased upward:
the maximum of five noisy figures is above each one's expectation, and with 40 episodes the
best of five reached about 0.6 on shuffled labels, exactly issue 13's goal, so that figure
could not tell "no leak" from "a small leak". Nested, the choice is made without the
episodes it is scored on: for each outer fold, every candidate (classifier and feature
choice) is cross-validated on inner folds of the outer training side only, the winner is
trained on the whole training side and scored on the outer fold. The accuracy over the
outer folds is what a watcher who picks their classifier from their own data would reach
on new disarms. `chosen_by_inner_folds` says which candidates won how many outer folds.

Also reported, from the same episodes: `classifiers`, each classifier's own (non-nested)
cross-validated accuracy on all the features, honest for that classifier alone;
`best_single_classifier_accuracy`, their maximum, the old optimistic headline;
`shuffled_labels_accuracy`, the baseline, the nested procedure on the same features with
the labels shuffled (the mean of `SHUFFLES` shuffles, each in
`shuffled_labels_accuracies`): what it reaches when the wire tells nothing, to read the
headline against; `shuffled_labels_best_single_accuracy`, the same for the optimistic
maximum. `per_feature_threshold` scores a stump on each feature alone, to show what gives a
disarm away; its maximum is optimistic too (the best of many), a diagnostic.

`cover_bytes_per_disarm`: bytes a normal disarm puts on the capture topic. A normal disarm
sends no photo (rule 2), so whatever it sends there is cover traffic, the price of hiding
the duress photos. If cover ever travels on another topic, count it here too.

Time runs `TIME_SCALE` x real time, so the 5-minute hold window of each normal disarm's
photos passes in seconds; an episode ends only when the device is quiet again (the normal
disarm's photos shredded, the duress photos receipted), so no episode leaks into the next.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from pathlib import Path

from simulator.broker import WireObserver
from simulator.stack import Stack
from simulator.timeline import Timeline

DEVICE = "home-1"
USER_PINS = ("1234", "2580")
DURESS_PIN = "9999"
TIME_SCALE = 60
PANEL = {"exit_delay_s": 30.0, "entry_delay_s": 45.0}  # an installer's delays
# The device's hold window: the firmware's default, 5 minutes. A shorter one (`hold_window_s`)
# makes the episodes shorter, for a quick check of the benchmark itself; the figures that
# count are measured with the default.
HOLD_WINDOW_S = 300.0
# Scenario seconds of wire per episode, from the door opening: the hold window and this
# margin. Long enough to hold the normal disarm's hold-window end (the disarm is at most
# 30 s after the door) and a duress upload that a loaded machine delayed by a few real
# seconds (minutes of scenario time at 60 x).
WINDOW_MARGIN_S = 120.0
WINDOW_S = HOLD_WINDOW_S + WINDOW_MARGIN_S
SETTLE_TIMEOUT_S = 90.0  # real seconds to wait for the device to be quiet after an episode
KINDS = ("normal", "duress")
SIZE_BUCKETS = (128, 256, 512, 1024, 2048, 4096)
LEAVES = ("capture", "event", "heartbeat", "status", "receipt", "time")


# -- playing the episodes ---------------------------------------------------------------------

def _count(dev, what: str, **fields) -> int:
    return sum(1 for t in list(dev.traces) if t.get("what") == what
               and all(t.get(k) == v for k, v in fields.items()))


def _wait_count(dev, what: str, above: int, timeout: float, **fields) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count(dev, what, **fields) > above:
            return True
        time.sleep(0.01)
    return False


def _play_episode(stack: Stack, kind: str, rng: random.Random, window_s: float, household: tuple[float, float]) -> dict:
    """One homecoming ending in a normal or a duress disarm; returns when and what happened.

    `household` is (seconds out, seconds from the door to the keypad)."""
    timeline = stack.timeline
    dev, panel = stack.devices[DEVICE], stack.panels[DEVICE]
    now = lambda: timeline.scenario_s(time.time())  # noqa: E731
    sleep = lambda s: time.sleep(s / timeline.scale)  # noqa: E731
    armed = _count(dev, "panel", event="armed")
    # Quiet again, before the next episode: the duress photos at the ARC; or the normal
    # disarm's cover at the ARC and its photos shredded at the end of their hold window.
    settle = ("receipt",) if kind == "duress" else ("cover_receipt", "shredded")
    settled_before = {what: _count(dev, what) for what in settle}
    panel.arm(rng.choice(USER_PINS))
    if not _wait_count(dev, "panel", armed, 30, event="armed"):
        return {"kind": kind, "failed": "the device never heard 'armed'"}
    away_s, to_keypad_s = household
    sleep(away_s)  # the household is out
    t_open = now()
    panel.open_zone("door-1")
    sleep(to_keypad_s)  # to the keypad, within the 45 s entry delay
    t_disarm = now()
    panel.disarm(DURESS_PIN if kind == "duress" else rng.choice(USER_PINS))
    sleep(max(0.0, t_open + window_s - now()))
    episode = {"kind": kind, "t_open": round(t_open, 3), "t_disarm": round(t_disarm, 3)}
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    for what in settle:
        if not _wait_count(dev, what, settled_before[what], max(0.0, deadline - time.monotonic())):
            episode["failed"] = f"the device did not settle in time (no {what} trace)"
            break
    return episode


def play(runs: int, seed: int, progress=None, wire_log: Path | None = None,
         hold_window_s: float = HOLD_WINDOW_S) -> tuple[list[dict], list[dict], dict]:
    """Play `runs` episodes of each kind in random order; returns (episodes, wire records, info).

    `hold_window_s` is the device's hold window; each episode's window is it plus WINDOW_MARGIN_S."""
    window_s = hold_window_s + WINDOW_MARGIN_S
    rng = random.Random(seed)
    kinds = [k for k in KINDS for _ in range(runs)]
    rng.shuffle(kinds)
    # The household's timings, drawn once for each pair and played once with each kind, so
    # that the kinds differ in the PIN alone (see the module's docstring).
    pairs = [(rng.uniform(10, 60), rng.uniform(5, 30)) for _ in range(runs)]
    households = {kind: rng.sample(pairs, len(pairs)) for kind in KINDS}
    timeline = Timeline(scale=TIME_SCALE)
    episodes: list[dict] = []
    started = time.time()
    with Stack(timeline=timeline) as stack:
        wire = WireObserver(stack.broker, clock=lambda: timeline.scenario_s(time.time()), t0=0.0)
        try:
            # The demo site's triggers: duress photos on, and so cover.
            hold_ms = None if hold_window_s == HOLD_WINDOW_S else round(hold_window_s * 1000)
            dev = stack.add_device(DEVICE, panel_kwargs=PANEL, hold_window_ms=hold_ms)
            dev.boot()
            dev.wait_trace("online", timeout=30)
            time.sleep(0.5)
            for i, kind in enumerate(kinds):
                episodes.append(_play_episode(stack, kind, rng, window_s, households[kind].pop()))
                if progress:
                    progress(i + 1, len(kinds))
            records = wire.snapshot()
            if wire_log:
                wire.write_jsonl(wire_log)
        finally:
            wire.close()
    info = {"hold_window_s": hold_window_s, "window_s": window_s, "real_s": round(time.time() - started, 1)}
    return episodes, records, info


# -- what the watcher sees --------------------------------------------------------------------

def window(records: list[dict], episode: dict, window_s: float = WINDOW_S) -> list[dict]:
    start = episode["t_open"]
    return [r for r in records if start <= r["t"] < start + window_s]


def features(msgs: list[dict], start: float, window_s: float = WINDOW_S) -> dict[str, float]:
    """The watcher's view of one episode's window: counts, sizes and timing, nothing else."""
    f: dict[str, float] = {}
    sizes = [m["bytes"] for m in msgs]
    times = [m["t"] - start for m in msgs]
    f["messages"] = len(msgs)
    f["bytes"] = sum(sizes)
    f["max_size"] = max(sizes, default=0)
    f["mean_size"] = statistics.fmean(sizes) if sizes else 0.0
    f["distinct_sizes"] = len(set(sizes))
    for leaf in LEAVES:
        mine = [m["bytes"] for m in msgs if m["topic"].rsplit("/", 1)[-1] == leaf]
        f[f"{leaf}_messages"] = len(mine)
        f[f"{leaf}_bytes"] = sum(mine)
    f["downlink_messages"] = sum(1 for m in msgs if "/down/" in m["topic"])
    f["qos0_messages"] = sum(1 for m in msgs if m["qos"] == 0)
    f["retained_messages"] = sum(1 for m in msgs if m["retain"])
    low = 0
    for high in SIZE_BUCKETS:
        f[f"size_{low}_{high}"] = sum(1 for s in sizes if low < s <= high)
        low = high
    f[f"size_over_{low}"] = sum(1 for s in sizes if s > low)
    f["first_message_s"] = times[0] if times else window_s
    f["last_message_s"] = times[-1] if times else 0.0
    f["span_s"] = times[-1] - times[0] if times else 0.0
    gaps = [b - a for a, b in zip(times, times[1:])]
    f["max_gap_s"] = max(gaps, default=0.0)
    f["mean_gap_s"] = statistics.fmean(gaps) if gaps else 0.0
    f["max_messages_in_5s"] = max((sum(1 for u in times if t <= u < t + 5) for t in times), default=0)
    f["max_bytes_in_5s"] = max((sum(s for u, s in zip(times, sizes) if t <= u < t + 5) for t in times), default=0)
    # The sequence a watcher who knows the topics would time: the disarm event, the upload
    # after it, the receipt after that; and heartbeats, which a busy device sends late.
    at = {leaf: [t for t, m in zip(times, msgs) if m["topic"].rsplit("/", 1)[-1] == leaf] for leaf in LEAVES}
    ups = at["capture"]
    f["event_to_upload_s"] = ups[0] - at["event"][0] if ups and at["event"] and at["event"][0] <= ups[0] else window_s
    f["upload_span_s"] = ups[-1] - ups[0] if ups else 0.0
    after = [t for t in at["receipt"] if ups and t >= ups[-1]]
    f["upload_to_receipt_s"] = after[0] - ups[-1] if after else window_s
    beats = at["heartbeat"]
    f["max_heartbeat_gap_s"] = max((b - a for a, b in zip(beats, beats[1:])), default=0.0)
    return f


# -- classifiers, in plain Python ---------------------------------------------------------------
# Each `fit(X, y)` returns a function x -> 0 or 1; X is a list of feature rows, y of labels.

def _standardiser(X):
    cols = list(zip(*X))
    mean = [statistics.fmean(c) for c in cols]
    sd = [statistics.pstdev(c) or 1.0 for c in cols]
    return lambda x: [(v - m) / s for v, m, s in zip(x, mean, sd)]


def _stump(xs: list[float], y: list[int]) -> tuple[float, float, int]:
    """(training accuracy, threshold, sign) of the best `sign * (x - threshold) > 0 -> 1`."""
    values = sorted(set(xs))
    cuts = [values[0] - 1] + [(a + b) / 2 for a, b in zip(values, values[1:])]
    best = (0.0, 0.0, 1)
    for cut in cuts:
        above = sum(1 for x, label in zip(xs, y) if (x > cut) == (label == 1))
        for sign, right in ((1, above), (-1, len(y) - above)):
            acc = right / len(y)
            if acc > best[0]:
                best = (acc, cut, sign)
    return best


def fit_threshold_on(feature: int):
    def fit(X, y):
        _acc, cut, sign = _stump([x[feature] for x in X], y)
        return lambda x: int((x[feature] > cut) == (sign == 1))
    return fit


def fit_threshold(X, y):
    """The best stump over all features, chosen on the training data only."""
    best = max(range(len(X[0])), key=lambda j: _stump([x[j] for x in X], y)[0])
    return fit_threshold_on(best)(X, y)


def fit_nearest_centroid(X, y):
    z = _standardiser(X)
    Z = [z(x) for x in X]
    centroids = {c: [statistics.fmean(col) for col in zip(*[r for r, label in zip(Z, y) if label == c])]
                 for c in set(y)}
    return lambda x: min(centroids, key=lambda c: sum((a - b) ** 2 for a, b in zip(z(x), centroids[c])))


def fit_knn3(X, y):
    z = _standardiser(X)
    Z = [z(x) for x in X]

    def predict(x):
        q = z(x)
        near = sorted(range(len(Z)), key=lambda i: sum((a - b) ** 2 for a, b in zip(q, Z[i])))[:3]
        return int(sum(y[i] for i in near) * 2 > len(near))
    return predict


def fit_logistic_regression(X, y, steps: int = 300, rate: float = 0.5, l2: float = 0.01):
    z = _standardiser(X)
    Z = [z(x) for x in X]
    w, b, n = [0.0] * len(Z[0]), 0.0, len(Z)
    sigmoid = lambda t: 1 / (1 + math.exp(-max(-30.0, min(30.0, t))))  # noqa: E731
    for _ in range(steps):
        grad, gb = [l2 * wi for wi in w], 0.0
        for r, label in zip(Z, y):
            err = sigmoid(sum(wi * v for wi, v in zip(w, r)) + b) - label
            gb += err / n
            for j, v in enumerate(r):
                grad[j] += err * v / n
        w = [wi - rate * g for wi, g in zip(w, grad)]
        b -= rate * gb
    return lambda x: int(sum(wi * v for wi, v in zip(w, z(x))) + b > 0)


def fit_gaussian_naive_bayes(X, y):
    stats = {}
    for c in set(y):
        rows = [x for x, label in zip(X, y) if label == c]
        cols = list(zip(*rows))
        stats[c] = (math.log(len(rows) / len(X)), [statistics.fmean(col) for col in cols],
                    [statistics.pvariance(col) + 1e-3 for col in cols])

    def score(x, c):
        prior, mean, var = stats[c]
        return prior - sum((v - m) ** 2 / (2 * s) + 0.5 * math.log(s) for v, m, s in zip(x, mean, var))
    return lambda x: max(stats, key=lambda c: score(x, c))


CLASSIFIERS = {
    "threshold": fit_threshold,
    "nearest_centroid": fit_nearest_centroid,
    "knn_3": fit_knn3,
    "logistic_regression": fit_logistic_regression,
    "gaussian_naive_bayes": fit_gaussian_naive_bayes,
}


MAX_FOLDS = 10


def stratified_folds(y: list[int], seed: int, max_folds: int = MAX_FOLDS) -> list[list[int]]:
    """Indices of the test side of each fold: every class dealt round-robin over k folds."""
    k = max(2, min(max_folds, min(y.count(c) for c in set(y))))
    folds: list[list[int]] = [[] for _ in range(k)]
    rng = random.Random(seed)
    for c in sorted(set(y)):
        members = [i for i, label in enumerate(y) if label == c]
        rng.shuffle(members)
        for n, i in enumerate(members):
            folds[n % k].append(i)
    return folds


def cross_validate(fit, X, y, folds: list[list[int]]) -> float:
    """Accuracy of `fit` over the folds: trained on the rest, scored on each fold's episodes."""
    right = 0
    for test in folds:
        held = set(test)
        train_X = [x for i, x in enumerate(X) if i not in held]
        train_y = [label for i, label in enumerate(y) if i not in held]
        predict = fit(train_X, train_y)
        right += sum(1 for i in test if predict(X[i]) == y[i])
    return right / len(X) if X else 0.0


def top_features(X, y, k: int) -> list[int]:
    """The k columns whose one-feature threshold fits the training data best (ties: column order)."""
    ranked = sorted(range(len(X[0])), key=lambda j: (-_stump([x[j] for x in X], y)[0], j))
    return sorted(ranked[:k])


def on_top_features(fit, k: int):
    """`fit` on the k most telling features of its training data: the choice is part of the fit."""
    def fit_selected(X, y):
        cols = top_features(X, y, k)
        predict = fit([[x[j] for j in cols] for x in X], y)
        return lambda x: predict([x[j] for j in cols])
    return fit_selected


# What the inner folds of nested cross-validation choose from: every classifier on all the
# features, and each (but the stump, which already picks its one feature) on the few
# features that tell most on its training data.
TOP_K = 3


def candidates() -> dict:
    out = dict(CLASSIFIERS)
    for name, fit in CLASSIFIERS.items():
        if name != "threshold":
            out[f"{name}_top{TOP_K}"] = on_top_features(fit, TOP_K)
    return out


INNER_FOLDS = 5
SHUFFLES = 3  # label shuffles of the baseline


def nested_cross_validate(X, y, folds: list[list[int]], seed: int) -> tuple[float, dict[str, int]]:
    """Accuracy of "the best simple classifier", chosen without seeing the episodes it is scored on.

    For each outer fold, every candidate (classifier and feature choice) is cross-validated on
    the inner folds of the outer training side only; the winner is trained on the whole
    training side and scored on the outer fold. Returns (accuracy, how often each won)."""
    cands = candidates()
    right, chosen = 0, {}
    for n, test in enumerate(folds):
        held = set(test)
        train = [i for i in range(len(X)) if i not in held]
        tX, ty = [X[i] for i in train], [y[i] for i in train]
        inner = stratified_folds(ty, seed * 1000 + n, max_folds=INNER_FOLDS)
        # Ties go to the candidate listed first (the simpler one), never to the test fold.
        best = max(cands, key=lambda name: cross_validate(cands[name], tX, ty, inner))
        chosen[best] = chosen.get(best, 0) + 1
        predict = cands[best](tX, ty)
        right += sum(1 for i in test if predict(X[i]) == y[i])
    return right / len(X), dict(sorted(chosen.items(), key=lambda kv: (-kv[1], kv[0])))


def score(rows: list[dict[str, float]], labels: list[int], seed: int = 0) -> dict:
    """The nested cross-validated accuracy (the headline), each classifier's, and their shuffled-label baselines.

    Needs at least two episodes of each kind."""
    names = sorted(rows[0])
    X = [[r[n] for n in names] for r in rows]
    folds = stratified_folds(labels, seed)
    nested, chosen = nested_cross_validate(X, labels, folds, seed)
    accuracies = {name: round(cross_validate(fit, X, labels, folds), 4) for name, fit in CLASSIFIERS.items()}
    per_feature = {n: round(cross_validate(fit_threshold_on(j), X, labels, folds), 4) for j, n in enumerate(names)}
    # The baseline: the same procedure on the same features, the labels shuffled, so that
    # whatever it scores above 0.5 is luck (and what selection adds to luck).
    # One shuffle is noisy (a few episodes either way), so the baseline is the mean of a few.
    shuffled_nested, shuffled_best = [], []
    for n in range(SHUFFLES):
        shuffled = list(labels)
        random.Random(seed * 100 + n).shuffle(shuffled)
        shuffled_folds = stratified_folds(shuffled, seed)
        shuffled_nested.append(round(nested_cross_validate(X, shuffled, shuffled_folds, seed)[0], 4))
        shuffled_best.append(round(max(cross_validate(fit, X, shuffled, shuffled_folds)
                                       for fit in CLASSIFIERS.values()), 4))
    best_single = max(accuracies, key=accuracies.get)
    return {
        "classifier_accuracy": round(nested, 4),
        "best_classifier": next(iter(chosen)),
        "chosen_by_inner_folds": chosen,
        "folds": len(folds),
        "classifiers": accuracies,
        "best_single_classifier": best_single,
        "best_single_classifier_accuracy": accuracies[best_single],
        "shuffled_labels_accuracy": round(statistics.fmean(shuffled_nested), 4),
        "shuffled_labels_accuracies": shuffled_nested,
        "shuffled_labels_best_single_accuracy": round(statistics.fmean(shuffled_best), 4),
        "shuffled_labels_best_single_accuracies": shuffled_best,
        "per_feature_threshold": dict(sorted(per_feature.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


# -- the benchmark ------------------------------------------------------------------------------

def run_wire_privacy(runs: int = 20, seed: int = 1, progress=None, wire_log: Path | None = None,
                     hold_window_s: float = HOLD_WINDOW_S) -> dict:
    """Play `runs` normal and `runs` duress disarms and score how well the wire tells them apart."""
    episodes, records, info = play(runs, seed, progress=progress, wire_log=wire_log, hold_window_s=hold_window_s)
    return figures(episodes, records, seed, info)


def figures(episodes: list[dict], records: list[dict], seed: int, info: dict | None = None) -> dict:
    """The benchmark's JSON from played episodes and the whole wire log (also to score a saved run again).

    Scoring needs at least 3 scored episodes of each kind (nested cross-validation needs 2 of
    each on every outer training side); with fewer the accuracies are None."""
    info = {"hold_window_s": HOLD_WINDOW_S, "window_s": WINDOW_S, **(info or {})}
    window_s = info["window_s"]
    episodes = [{k: v for k, v in e.items() if k not in ("messages", "bytes")} for e in episodes]
    good = [e for e in episodes if "failed" not in e]
    rows, labels, late, per_kind = [], [], [], {k: {"messages": [], "device_bytes": [], "cover_bytes": []} for k in KINDS}
    for e in good:
        msgs = window(records, e, window_s)
        rows.append(features(msgs, e["t_open"], window_s))
        labels.append(KINDS.index(e["kind"]))
        e["messages"], e["bytes"] = len(msgs), sum(m["bytes"] for m in msgs)
        up = [m for m in msgs if f"/{DEVICE}/up/" in m["topic"]]
        per_kind[e["kind"]]["messages"].append(len(msgs))
        per_kind[e["kind"]]["device_bytes"].append(sum(m["bytes"] for m in up))
        per_kind[e["kind"]]["cover_bytes"].append(sum(m["bytes"] for m in up if m["topic"].endswith("/up/capture")))
        if e["kind"] == "duress" and not any(m["topic"].endswith("/up/capture") for m in up):
            late.append(e)
    mean = lambda xs: round(statistics.fmean(xs), 1) if xs else None  # noqa: E731
    if all(labels.count(k) >= 3 for k in range(len(KINDS))):
        result = score(rows, labels, seed)
    else:  # too few scored episodes of a kind to cross-validate
        result = {"classifier_accuracy": None, "best_classifier": None, "chosen_by_inner_folds": {},
                  "folds": 0, "classifiers": {}, "best_single_classifier": None,
                  "best_single_classifier_accuracy": None, "shuffled_labels_accuracy": None,
                  "shuffled_labels_accuracies": [], "shuffled_labels_best_single_accuracy": None,
                  "shuffled_labels_best_single_accuracies": [], "per_feature_threshold": {}}
    return {
        **result,
        "chance": 0.5,
        "goal_at_most": 0.6,
        "cross_validation": f"nested stratified k-fold (inner {INNER_FOLDS} folds choose the classifier and its features)",
        "cover_bytes_per_disarm": mean(per_kind["normal"]["cover_bytes"]) or 0,
        "device_bytes_per_disarm": {k: mean(v["device_bytes"]) for k, v in per_kind.items()},
        "wire_messages_per_disarm": {k: mean(v["messages"]) for k, v in per_kind.items()},
        "runs": len(episodes),
        "runs_by_kind": {k: sum(1 for e in episodes if e["kind"] == k) for k in KINDS},
        "runs_scored": len(good),
        "runs_failed": [e for e in episodes if "failed" in e],
        # Duress disarms whose photos left after the window closed (a loaded machine): the
        # window missed what gives them away, so the accuracy would flatter the wire.
        "duress_windows_without_upload": len(late),
        "features": len(rows[0]) if rows else 0,
        "time_scale": TIME_SCALE,
        "seed": seed,
        "wire_messages": len(records),
        "episodes": episodes,
        **info,
    }
