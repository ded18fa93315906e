"""`vericam bench fuzz`: a time-bounded mutation fuzz of everything that reads hostile input.

Targets and the contract each must keep (anything else is a crash):
- `envelope`:    `open_envelope(topic, payload, ...)` raises only `ProtocolError`.
- `chunk`:       `parse_chunk(body)` raises only `ProtocolError`.
- `sealed`:      `open_delivery(bytes, arc_key)` (release record, sealed capture, padding)
                 raises only `ProtocolError`.
- `reassembler`: `Ingest.process_batch(messages)` never raises and never counts an
  `internal_error`; every message it does not store or apply is counted by reason. The
  hostile chunks here carry VALID MACs (mutated, then signed again), so they get past §3
  and reach the reassembler and the capture opener.
- `scenario`:    `simulator.scenario.load(path)` returns a scenario or raises `ScenarioError`.
- `retention`:   `RetentionPolicy.load(data_dir)` returns a policy or raises `RetentionConfigError`.

Inputs are seeded from the test vectors in `tests/vectors/` (when the source tree is there),
from a freshly sealed capture, and from the shipped scenarios, then mutated (bit flips, byte
sets, splices, cuts, repeats, inserted boundary integers) with a seeded RNG. The device's
own config loader (`firmware/vericam/agent.py load_config`) runs only on MicroPython and is
fuzzed by `tests/test_fuzz_loaders.py` there.

Prints per-target counts: inputs tried, outcomes by reason, crashes (must be 0). A crash is
reported with the exception type and where it was raised, never with the input bytes.
"""

from __future__ import annotations

import json
import os
import random
import struct
import tempfile
import time
import traceback
from pathlib import Path

from gateway.protocol import capture as cap
from gateway.protocol import envelope as env
from gateway.protocol.errors import ProtocolError
from simulator.fake_device import FakeDevice, fake_jpeg

# The protocol test vectors are test data, not shipped in the wheel: they seed the fuzz only
# when this file sits in a source checkout (the directory with pyproject.toml and tests/).
SOURCE_TREE = Path(__file__).resolve().parents[2]
VECTORS = SOURCE_TREE / "tests" / "vectors" if (SOURCE_TREE / "pyproject.toml").is_file() else None
SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

BOUNDARY_INTS = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, 1024, 1025,
                 4 * 2**20, 4 * 2**20 + 1]
TOML_TOKENS = ["[device]", "[[step]]", "[expect]", "[retention]", "name = ", "do = ", "wait = ", "step = ",
               "= 1", "= -1", "= 1e999", "= nan", "= inf", '= "x"', "= []", "= [1, 2]", "= {}", "= { a = 1 }",
               "= true", "= 1979-05-27T07:32:00Z", '"""', "'''", "\\u0000", "\n", "#", ".", ",", "=", "[", "]",
               "image_days", "hold_days", "batch", "sweep_interval_s", "activity_years", "retention = 5",
               "step = 5", "step = [1]", "device = 1", "[[retention]]"]


class FuzzCrash(AssertionError):
    """A target broke its contract: an exception other than the ones it may raise."""


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    return f"{type(exc).__name__} at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else type(exc).__name__


# Mutation ------------------------------------------------------------------------------------

def mutate(rng: random.Random, data: bytes, seeds: list[bytes], rounds: int | None = None) -> bytes:
    buf = bytearray(data)
    for _ in range(rounds or rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            p = rng.randrange(len(buf))
            buf[p] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # set a byte
            buf[rng.randrange(len(buf))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif op == 2:  # cut
            buf = buf[:pos] if rng.random() < 0.5 else buf[pos:]
        elif op == 3:  # insert random bytes
            buf[pos:pos] = os.urandom(rng.choice([1, 2, 4, 8, 33, 300]))
        elif op == 4 and buf:  # delete a run
            del buf[pos:pos + rng.randint(1, 64)]
        elif op == 5:  # overwrite with a boundary integer
            n = rng.choice(BOUNDARY_INTS)
            width = rng.choice([1, 2, 4, 8])
            buf[pos:pos + width] = (n % (1 << (8 * width))).to_bytes(width, "big")
        elif op == 6 and seeds:  # splice another seed
            other = rng.choice(seeds)
            q = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[q:q + rng.randint(1, 256)])
        elif op == 7 and buf:  # repeat a piece
            piece = buf[pos:pos + rng.randint(1, 32)]
            buf[pos:pos] = piece * rng.randint(1, 8)
    return bytes(buf)


def mutate_text(rng: random.Random, text: str, seeds: list[str]) -> str:
    if rng.random() < 0.5:  # token-aware: insert, drop or replace TOML-ish pieces
        lines = text.splitlines()
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(lines) + 1)
            op = rng.randrange(3)
            if op == 0:
                lines.insert(pos, rng.choice(TOML_TOKENS) + rng.choice(["", " " + rng.choice(TOML_TOKENS)]))
            elif op == 1 and lines:
                del lines[min(pos, len(lines) - 1)]
            elif lines:
                i = min(pos, len(lines) - 1)
                key = lines[i].split("=")[0]
                lines[i] = key + rng.choice(TOML_TOKENS[6:22])
        return "\n".join(lines)
    raw = mutate(rng, text.encode(), [s.encode() for s in seeds])
    return raw.decode("utf-8", errors=rng.choice(["replace", "ignore", "surrogateescape"]))


# Seeds ---------------------------------------------------------------------------------------

class Corpus:
    """Valid inputs to start from: a provisioned test device, a sealed capture, the vectors."""

    def __init__(self, workdir: Path):
        from gateway.provisioning.devices import add_device, init_arc
        from gateway.storage.store import Store

        self.data = workdir / "gw"
        init_arc(self.data)
        self.device = FakeDevice(add_device(self.data, "cam-1", "site-fuzz"), chunk_size=512)
        self.device_id = self.device.device_id
        self.keys = self.device.keys
        self.arc_key_id = self.device.arc_key_id
        with Store.open(self.data) as store:
            self.arc_private = store.keys.arc_private_key()
        self.new_capture()
        self.envelopes = [self.sign(env.T_CAPTURE, c) for c in self.chunks[:3]]
        self.envelopes.append(self.sign(env.T_STATUS, b'{"state":"online","fw":"fuzz"}'))
        self.vector_bytes: list[bytes] = []
        self.vector_sealed: list[bytes] = []
        for path in sorted(VECTORS.glob("*/*.json")) if VECTORS and VECTORS.is_dir() else []:
            try:
                v = json.loads(path.read_text())
                out = bytes.fromhex(v["output"])
            except (ValueError, KeyError, TypeError):
                continue
            if v.get("kind") == "envelope":
                self.vector_bytes.append(out)
            elif v.get("kind") == "sealed_capture":
                self.vector_sealed.append(out)
        self.scenarios = [p.read_text() for p in sorted(SCENARIOS.glob("*.toml"))]
        self.retention = ["[retention]\nimage_days = 7\nhold_days = 30\nactivity_years = 3\n"
                          "sweep_interval_s = 60\nbatch = 500\n"]

    def new_capture(self) -> None:
        """A freshly sealed two-frame capture, as its delivery (a stored capture id is never stored again)."""
        self.capture_id, self.sealed = self.device.seal([fake_jpeg(1506), fake_jpeg(706)])
        self.chunks = self.device.chunk_bodies(self.capture_id, self.sealed, os.urandom(8))

    def sign(self, etype: int, body: bytes, counter: int | None = None, time_s: int | None = None) -> bytes:
        """`body` in an envelope of the test device, with its next counter unless `counter` is given."""
        return self.device.envelope(etype, body, time_s, counter=counter)[1]


# Targets -------------------------------------------------------------------------------------

class Target:
    name = ""

    def __init__(self, corpus: Corpus, rng: random.Random, workdir: Path):
        self.corpus, self.rng, self.workdir = corpus, rng, workdir
        self.tried = 0
        self.outcomes: dict[str, int] = {}
        self.crashes: list[str] = []

    def one(self) -> None:
        self.tried += 1
        try:
            outcome = self.run_one()
        except FuzzCrash as exc:
            self.crashes.append(str(exc))
            outcome = "crash"
        except Exception as exc:  # the target itself broke its contract
            self.crashes.append(_where(exc))
            outcome = "crash"
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def run_one(self) -> str:
        raise NotImplementedError

    def report(self) -> dict:
        crashes: dict[str, int] = {}
        for c in self.crashes:
            crashes[c] = crashes.get(c, 0) + 1
        return {"tried": self.tried, "outcomes": dict(sorted(self.outcomes.items())),
                "crashes": len(self.crashes), "crash_kinds": crashes}


def only_protocol_errors(fn, *args) -> str:
    try:
        fn(*args)
        return "accepted"
    except ProtocolError as exc:
        return exc.reason
    except Exception as exc:
        raise FuzzCrash(_where(exc)) from None


class EnvelopeTarget(Target):
    name = "envelope"

    def run_one(self) -> str:
        c, rng = self.corpus, self.rng
        seeds = c.envelopes + c.vector_bytes
        payload = mutate(rng, rng.choice(seeds), seeds) if rng.random() < 0.9 else os.urandom(rng.randrange(80))
        topic = env.topic_for(c.device_id, rng.choice([env.T_CAPTURE, env.T_EVENT, env.T_STATUS]))
        if rng.random() < 0.1:
            topic = mutate(rng, topic.encode(), []).decode("utf-8", "replace")
        from gateway.protocol.envelope import ReplayWindow

        window = ReplayWindow()
        outcome = only_protocol_errors(env.open_envelope, topic, payload,
                                       lambda d: c.keys if d == c.device_id else None, lambda d: window,
                                       time.time(), lambda d: -1)
        if outcome == "accepted":
            if payload not in c.envelopes:
                raise FuzzCrash("a changed envelope passed every check")  # a forgery got through
            return "accepted_unchanged"
        return outcome


class ChunkTarget(Target):
    name = "chunk"

    def run_one(self) -> str:
        seeds = self.corpus.chunks
        return only_protocol_errors(cap.parse_chunk, mutate(self.rng, self.rng.choice(seeds), seeds))


class SealedTarget(Target):
    name = "sealed"

    def run_one(self) -> str:
        c = self.corpus
        seeds = [c.sealed] + c.vector_sealed
        data = mutate(self.rng, c.sealed, seeds)
        outcome = only_protocol_errors(cap.open_delivery, data, c.arc_private, c.arc_key_id)
        if outcome == "accepted":
            # More or less zero padding is the same delivery (§4.5); any other change is a crash.
            if data.rstrip(b"\0") != c.sealed.rstrip(b"\0"):
                raise FuzzCrash("a changed sealed capture opened")
            return "accepted_unchanged"
        return outcome


class ReassemblerTarget(Target):
    """Batches of validly signed chunks with hostile bodies through the real Ingest and store."""

    name = "reassembler"

    def __init__(self, corpus, rng, workdir):
        super().__init__(corpus, rng, workdir)
        from gateway.ingest.pipeline import Ingest
        from gateway.storage.store import Store

        self.store = Store.open(corpus.data)
        self.ingest = Ingest(self.store, log=lambda line: None)
        self.batches = 0

    def run_one(self) -> str:
        from gateway.ingest.pipeline import Message
        from gateway.protocol.envelope import ReplayWindow

        c, rng = self.corpus, self.rng
        c.new_capture()
        cid = os.urandom(16) if rng.random() < 0.3 else c.capture_id
        aid = os.urandom(8)
        bodies = []
        hostile = rng.random() < 0.5  # else the chunks are intact (maybe reordered or repeated)
        new_aid = rng.random() < 0.7  # one alarm id for the whole capture (else the split's own)
        for body in c.chunks:
            if new_aid or cid != c.capture_id:
                body = body[:16] + aid + body[24:] if cid == c.capture_id else cid + aid + body[24:]
            bodies.append(mutate(rng, body, c.chunks) if hostile and rng.random() < 0.3 else body)
        if rng.random() < 0.3:
            rng.shuffle(bodies)
        if rng.random() < 0.2:
            bodies += rng.sample(bodies, min(len(bodies), 3))  # duplicate chunks, fresh counters
        topic = env.topic_for(c.device_id, env.T_CAPTURE)
        batch = [Message(topic, c.sign(env.T_CAPTURE, b)) for b in bodies]
        if rng.random() < 0.1:  # validly signed, with boundary counters and times
            batch.insert(rng.randrange(len(batch) + 1), Message(topic, c.sign(
                env.T_CAPTURE, rng.choice(bodies), counter=rng.choice([0, 2**32, 2**63 - 1, 2**63, 2**64 - 1]),
                time_s=rng.choice([0, 1, 2**31, 2**32 - 1]))))
        try:
            result = self.ingest.process_batch(batch)
            with self.store.transaction():  # partial captures would soon hit too_many_captures
                for spooled in self.store.spool.in_flight(c.device_id):
                    self.store.spool.drop(c.device_id, spooled)
                self.store.devices.save_replay_window(c.device_id, ReplayWindow())  # a top counter would end the run
            c.device.counter = 0
        except Exception as exc:
            raise FuzzCrash(_where(exc)) from None
        self.batches += 1
        if result.rejected.get("internal_error"):
            raise FuzzCrash("internal_error counted by the ingest")
        self.tried += len(batch) - 1  # count messages, not batches
        for reason, n in result.rejected.items():
            self.outcomes[reason] = self.outcomes.get(reason, 0) + n
        stored = len(result.stored)
        self.outcomes["stored_capture"] = self.outcomes.get("stored_capture", 0) + stored
        return "batch"

    def report(self) -> dict:
        out = super().report()
        out["batches"] = self.batches
        out["outcomes"].pop("batch", None)
        return out


class ScenarioTarget(Target):
    name = "scenario"

    def run_one(self) -> str:
        from simulator.scenario import ScenarioError, load

        c, rng = self.corpus, self.rng
        path = self.workdir / "fuzz-scenario.toml"
        if rng.random() < 0.1:
            path.write_bytes(mutate(rng, rng.choice(c.scenarios).encode(), []))  # maybe not UTF-8
        else:
            path.write_text(mutate_text(rng, rng.choice(c.scenarios), c.scenarios), errors="surrogateescape")
        try:
            load(path)
            return "accepted"
        except ScenarioError:
            return "ScenarioError"
        except Exception as exc:
            raise FuzzCrash(_where(exc)) from None


class RetentionTarget(Target):
    name = "retention"

    def run_one(self) -> str:
        from gateway.governance.retention import CONFIG_FILE, RetentionConfigError, RetentionPolicy

        c, rng = self.corpus, self.rng
        d = self.workdir / "retention"
        d.mkdir(exist_ok=True)
        text = mutate_text(rng, rng.choice(c.retention), c.retention + c.scenarios[:2])
        (d / CONFIG_FILE).write_text(text, errors="surrogateescape")
        try:
            RetentionPolicy.load(d)
            return "accepted"
        except RetentionConfigError:
            return "RetentionConfigError"
        except Exception as exc:
            raise FuzzCrash(_where(exc)) from None


TARGETS = [EnvelopeTarget, ChunkTarget, SealedTarget, ReassemblerTarget, ScenarioTarget, RetentionTarget]


def run(seconds: float, seed: int | None = None, targets: list[str] | None = None,
        rounds: int | None = None) -> dict:
    """Fuzz every target round-robin for `seconds` (or until `rounds` rounds); returns the counts."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vericam-fuzz-") as tmp:
        workdir = Path(tmp)
        corpus = Corpus(workdir)
        active = [T(corpus, rng, workdir) for T in TARGETS if not targets or T.name in targets]
        deadline = time.monotonic() + seconds
        done = 0
        while time.monotonic() < deadline and (rounds is None or done < rounds):
            for t in active:
                t.one()
            done += 1
        for t in active:
            if isinstance(t, ReassemblerTarget):
                t.store.close()
        report = {t.name: t.report() for t in active}
    return {"seconds": round(time.monotonic() - t0, 1), "seed": seed,
            "inputs": sum(r["tried"] for r in report.values()),
            "crashes": sum(r["crashes"] for r in report.values()), "targets": report}
