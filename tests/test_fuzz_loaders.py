"""Fast fuzz (CI) of the loaders that test_gateway_protocol/test_gateway_ingest do not cover:
the scenario TOML loader, the gateway's retention config, the device's config loader (on real
MicroPython), and a few seconds of `vericam bench fuzz` over every target.

Contract: hostile text gives the loader's own error (`ScenarioError`, `RetentionConfigError`,
`ValueError` on the device), never another exception. The long run is
`vericam bench fuzz --seconds S --json` (simulator/bench/fuzz.py).
"""

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.governance.retention import CONFIG_FILE, RetentionConfigError, RetentionPolicy
from simulator.bench import fuzz as bench_fuzz
from simulator.mpy import run_micropython
from simulator.scenario import ScenarioError, load

from support.cli import vericam

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "simulator" / "scenarios").glob("*.toml"))
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

toml_value = st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=20),
                       st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                            max_size=2))


def toml_literal(v) -> str:
    """A TOML spelling of `v` (json is close enough for what tomllib accepts or refuses)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(v), repr(v))
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_literal(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_literal(x) for x in v) + "]"
    return json.dumps(v)


# Text that is TOML-ish: lines of known keys and tables with arbitrary values, plus raw text.
toml_line = st.one_of(
    st.sampled_from(bench_fuzz.TOML_TOKENS),
    st.builds(lambda k, v: f"{k} = {toml_literal(v)}",
              st.sampled_from(["name", "do", "wait", "step", "device", "expect", "retention", "image_days",
                               "hold_days", "batch", "sweep_interval_s", "activity_years", "pin", "x"]),
              toml_value),
    st.text(max_size=30))
tomlish = st.lists(toml_line, max_size=12).map("\n".join)


def write(path: Path, text_or_bytes) -> Path:
    if isinstance(text_or_bytes, bytes):
        path.write_bytes(text_or_bytes)
    else:
        path.write_text(text_or_bytes, errors="surrogatepass")
    return path


@FAST
@given(st.one_of(tomlish, st.binary(max_size=200),
                 st.builds(lambda s, cut: s[:cut], st.sampled_from([p.read_text() for p in SCENARIOS]),
                           st.integers(0, 3000))))
@example("step = 5\nname = 'x'")
@example("name = 'x'\nstep = [1]")
@example("name = 'x'\ndevice = 3")
@example("name = 1")
@example("name = 'x'\n[[step]]\ndo = 5")
@example("name = 'x'\n[[step]]\nwait = 'soon'")
@example("name = 'x'\n[[step]]\nwait = nan")
@example(b"name = '\xff'")
def test_the_scenario_loader_raises_only_scenario_error(tmp_path, text):
    path = write(tmp_path / "s.toml", text)
    try:
        data = load(path)
    except ScenarioError:
        return
    assert isinstance(data["name"], str)
    assert all(isinstance(s, dict) and ("do" in s or "wait" in s) for s in data.get("step", []))


def test_every_shipped_scenario_still_loads():
    assert SCENARIOS and all(load(p)["name"] for p in SCENARIOS)


@FAST
@given(st.one_of(tomlish.map(lambda t: "[retention]\n" + t), tomlish, st.binary(max_size=200)))
@example("retention = 5")
@example("retention = [[1]]")
@example("[retention]\nhold_days = 31")
@example("[retention]\nsweep_interval_s = nan")
@example("[retention]\nbatch = true")
@example(b"[retention]\nimage_days = '\xfe'")
def test_the_retention_loader_raises_only_retention_config_error(tmp_path, text):
    write(tmp_path / CONFIG_FILE, text)
    try:
        policy = RetentionPolicy.load(tmp_path)
    except RetentionConfigError:
        return
    assert 1 <= policy.image_days <= policy.hold_days <= 30
    assert 0 < policy.sweep_interval_s <= 3600


# The device's config loader runs only on MicroPython (agent.py imports cryptolib), so it is
# fuzzed there: one MicroPython process loads a batch of generated config files.
DEVICE_CHECK = """
import sys
from vericam.agent import load_config
out = []
for path in sys.argv[1:]:
    try:
        cfg = load_config(path)
        out.append("ok" if isinstance(cfg, dict) else "returned " + type(cfg).__name__)
    except ValueError:
        out.append("ValueError")
    except Exception as exc:
        out.append(type(exc).__name__)
print("|".join(out))
"""
GOOD = {"device_id": "cam-1", "device_key": "00" * 32, "arc_n": "ab", "arc_e": 65537, "arc_key_id": "00" * 8,
        "broker": {"host": "127.0.0.1", "port": 1883}}


def device_config_corpus(n: int = 300, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    good = json.dumps(GOOD).encode()
    out = [good]
    for key in GOOD:  # each required key missing
        out.append(json.dumps({k: v for k, v in GOOD.items() if k != key}).encode())
    out += [b"", b"{", b"null", b"[]", b'"x"', b"{}", b"[1, 2]", b"1e999", b"\x00" * 8]
    while len(out) < n:
        out.append(bench_fuzz.mutate(rng, good, [good]))
    return out


def run_device_loader(tmp_path, corpus: list[bytes]) -> list[str]:
    paths = []
    for i, data in enumerate(corpus):
        p = tmp_path / f"c{i}.json"
        p.write_bytes(data)
        paths.append(str(p))
    script = tmp_path / "check.py"
    script.write_text(DEVICE_CHECK)
    proc = run_micropython(script, *paths, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout.decode().strip().split("|")


def test_the_device_config_loader_accepts_good_configs_and_refuses_json_objects_without_keys(tmp_path):
    """Well-formed JSON objects and broken JSON text: a dict, or ValueError (MicroPython's JSON
    errors are ValueError), never anything else."""
    corpus = device_config_corpus(20)[:7] + [b"", b"{", b"{}", b'{"device_id": 1']
    outcomes = run_device_loader(tmp_path, corpus)
    assert outcomes[0] == "ok"
    assert set(outcomes[1:]) == {"ValueError"}, outcomes


def test_the_device_config_loader_raises_only_value_error_on_any_file(tmp_path):
    corpus = device_config_corpus(300) + [b"5", b'"device_id device_key arc_n arc_e arc_key_id broker"',
                                          b'{"device_id": "\xff"}']
    outcomes = run_device_loader(tmp_path, corpus)
    bad = {o for o in outcomes if o not in ("ok", "ValueError")}
    assert not bad, f"device config loader broke its contract: {sorted(bad)}"


def test_a_short_bench_fuzz_run_finds_no_crash():
    """Every target of `vericam bench fuzz` for 100 rounds (seeded, so a failure repeats; the
    count, not the time, is fixed, so a loaded CI machine runs the same inputs)."""
    result = bench_fuzz.run(120.0, seed=20261122, rounds=100)
    assert result["crashes"] == 0, json.dumps(result["targets"], indent=1)
    for name, r in result["targets"].items():
        assert r["tried"] >= 100, (name, r)
    # The reassembler saw validly signed hostile chunks and still stored the intact captures.
    assert result["targets"]["reassembler"]["outcomes"].get("stored_capture", 0) > 0


def test_vericam_bench_fuzz_prints_json_counts():
    proc = vericam("bench", "fuzz", "--seconds", "1", "--seed", "1", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["crashes"] == 0 and result["inputs"] > 100
    assert set(result["targets"]) == {"envelope", "chunk", "sealed", "reassembler", "scenario", "retention"}
