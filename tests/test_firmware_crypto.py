"""The firmware's crypto and sealing, run on the real MicroPython, checked from CPython.

Each test writes a tiny MicroPython script, runs it with the firmware tree on its path and
checks what it produced with independent CPython code (`hmac`, `cryptography`): the device
and the ARC must agree on every byte without sharing an implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import shutil
import struct
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from simulator.mpy import run_micropython

from support.plaintext import assert_no_plaintext

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS = REPO_ROOT / "tests" / "vectors"
FIRMWARE_VECTORS = VECTORS / "firmware"
GATEWAY_VECTORS = VECTORS / "gateway"
ARC_KEY = json.loads((VECTORS / "test_arc_key.json").read_text())
MAKE_VECTORS = REPO_ROOT / "tests" / "firmware" / "make_vectors.py"
CHECK_VECTORS = REPO_ROOT / "tests" / "firmware" / "check_vectors.py"


def micropython(tmp_path: Path, source: str, *args: str, heapsize: str | None = None) -> str:
    """Run `source` on MicroPython; fail with its stderr if it fails; return its stdout."""
    script = tmp_path / f"script_{abs(hash(source)) % 10**8}.py"
    script.write_text(textwrap.dedent(source))
    done = run_micropython(script, *args, heapsize=heapsize, timeout=120)
    assert done.returncode == 0, f"MicroPython failed:\n{done.stdout.decode()}\n{done.stderr.decode()}"
    return done.stdout.decode()


def arc_private_key():
    return serialization.load_pem_private_key(ARC_KEY["private_key_pem"].encode(), None)


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)


# ---- HMAC, HKDF --------------------------------------------------------------------------

def test_hmac_matches_cpython_hmac_including_long_keys(tmp_path):
    rng = random.Random(2104)
    cases = []
    for key_len in (0, 1, 20, 32, 63, 64, 65, 131, 300):
        for msg_len in (0, 1, 55, 64, 1000, rng.randrange(5000)):
            cases.append({"key": rng.randbytes(key_len).hex(), "msg": rng.randbytes(msg_len).hex(),
                          "cut": rng.randrange(msg_len + 1)})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = micropython(tmp_path, """
        import json, sys
        from vericam.hmac256 import HMAC, hmac_sha256
        for case in json.load(open(sys.argv[1])):
            key, msg, cut = bytes.fromhex(case["key"]), bytes.fromhex(case["msg"]), case["cut"]
            mac = HMAC(key)
            mac.update(msg[:cut])
            mac.update(msg[cut:])
            print(hmac_sha256(key, msg).hex(), mac.digest().hex())
    """, str(tmp_path / "cases.json"))
    for case, line in zip(cases, out.splitlines(), strict=True):
        want = hmac.new(bytes.fromhex(case["key"]), bytes.fromhex(case["msg"]), "sha256").hexdigest()
        assert line.split() == [want, want]


def test_hmac_copy_continues_from_a_short_prefix_and_refuses_a_long_one(tmp_path):
    out = micropython(tmp_path, """
        from vericam.hmac256 import HMAC, HMACCopyError, HMACFinalError, compare_digest
        base = HMAC(b"k" * 32)
        base.update(b"capture-id-16byt")
        a = base.copy(); a.update(b"frame 0")
        b = base.copy(); b.update(b"frame 1")
        print(a.digest().hex(), b.digest().hex())
        base.update(b"x" * 100)
        try:
            base.copy(); print("copied")
        except HMACCopyError:
            print("refused")
        base.digest()
        try:
            base.update(b"more"); print("updated")
        except HMACFinalError:
            print("final")
        print(compare_digest(b"abc", b"abc"), compare_digest(b"abc", b"abd"), compare_digest(b"ab", b"abc"))
    """)
    lines = out.splitlines()
    want = [hmac.new(b"k" * 32, b"capture-id-16byt" + f, "sha256").hexdigest()
            for f in (b"frame 0", b"frame 1")]
    assert lines[0].split() == want
    assert lines[1:] == ["refused", "final", "True False False"]


def test_hkdf_matches_cryptography(tmp_path):
    rng = random.Random(5869)
    cases = [{"ikm": rng.randbytes(rng.choice([1, 16, 32, 80])).hex(),
              "salt": rng.randbytes(rng.choice([0, 0, 16, 32, 100])).hex(),
              "info": rng.randbytes(rng.choice([0, 17, 20])).hex(),
              "length": rng.choice([1, 32, 33, 42, 64, 255 * 32])} for _ in range(40)]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = micropython(tmp_path, """
        import json, sys
        from vericam.hkdf import hkdf_sha256
        for c in json.load(open(sys.argv[1])):
            h = bytes.fromhex
            print(hkdf_sha256(h(c["ikm"]), h(c["salt"]), h(c["info"]), c["length"]).hex())
    """, str(tmp_path / "cases.json"))
    for case, line in zip(cases, out.splitlines(), strict=True):
        h = bytes.fromhex
        assert line == hkdf(h(case["ikm"]), h(case["salt"]), h(case["info"]), case["length"]).hex()


def test_device_keys_are_the_hkdf_splits_of_the_spec(tmp_path):
    device_key = os.urandom(32)
    out = micropython(tmp_path, f"""
        from vericam.keys import DeviceKeys
        k = DeviceKeys(bytes.fromhex("{device_key.hex()}"))
        print(k.up.hex(), k.down.hex(), k.event.hex())
    """)
    assert out.split() == [hkdf(device_key, b"", info).hex() for info in
                           (b"vericam v1 up mac", b"vericam v1 down mac", b"vericam v1 event enc")]


# ---- RSA-OAEP ----------------------------------------------------------------------------

def test_wrapped_data_keys_unwrap_with_the_arc_private_key(tmp_path):
    out = micropython(tmp_path, f"""
        import os, time
        from vericam.rsa_oaep import load_arc_key
        arc = load_arc_key("{ARC_KEY['n']}", {ARC_KEY['e']}, "{ARC_KEY['arc_key_id']}")
        print(arc.key_id.hex())
        keys = [os.urandom(32) for _ in range(20)]
        started = time.ticks_us()
        wrapped = [arc.wrap(k) for k in keys]
        per_wrap = time.ticks_diff(time.ticks_us(), started) / len(keys)
        for k, w in zip(keys, wrapped):
            print(k.hex(), w.hex())
        print("us_per_wrap", per_wrap)
    """)
    lines = out.splitlines()
    assert lines[0] == ARC_KEY["arc_key_id"]
    private = arc_private_key()
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    pairs = [line.split() for line in lines[1:-1]]
    assert len(pairs) == 20
    for data_key, wrapped in pairs:
        assert len(bytes.fromhex(wrapped)) == 256
        assert private.decrypt(bytes.fromhex(wrapped), oaep).hex() == data_key
    assert len({w for _, w in pairs}) == 20  # fresh OAEP seeds
    print(f"RSA-OAEP-2048 wrap on MicroPython: {float(lines[-1].split()[1]) / 1000:.2f} ms")


def test_a_mismatched_arc_key_id_is_refused_at_start_up(tmp_path):
    out = micropython(tmp_path, f"""
        from vericam.rsa_oaep import OAEPError, load_arc_key
        try:
            load_arc_key("{ARC_KEY['n']}", 65537, "0011223344556677")
            print("accepted")
        except OAEPError as e:
            print("refused")
    """)
    assert out.strip() == "refused"


# ---- sealed capture: an independent opener, as the ARC would write it ---------------------

class CaptureRejected(Exception):
    pass


def open_capture(sealed: bytes, slot_key: bytes) -> dict:
    """Parse, verify (encrypt-then-MAC) and decrypt a sealed capture with the ARC's key and its slot key."""
    if sealed[:5] != b"VCAP\x02":
        raise CaptureRejected("not a v2 sealed capture")
    capture_id = sealed[8:24]
    key_id, (w,) = sealed[24:32], struct.unpack(">H", sealed[32:34])
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    try:
        dk = arc_private_key().decrypt(sealed[34:34 + w], oaep)
    except ValueError:
        raise CaptureRejected("wrapped key does not unwrap") from None
    k_enc = hkdf(dk + slot_key, capture_id, b"vericam v2 frame enc")
    k_mac = hkdf(dk + slot_key, capture_id, b"vericam v2 frame mac")
    k_meta = hkdf(dk + slot_key, capture_id, b"vericam v2 meta enc")
    at = 34 + w + 32
    if not hmac.compare_digest(hmac.new(k_mac, sealed[:at], "sha256").digest(), sealed[at:at + 32]):
        raise CaptureRejected("header MAC")
    decryptor = Cipher(algorithms.AES(k_meta), modes.CBC(sealed[at - 32:at - 16])).decryptor()
    meta = decryptor.update(sealed[at - 16:at]) + decryptor.finalize()
    if meta[5:] != bytes([11]) * 11:
        raise CaptureRejected("padding of the header's trigger and time")
    trigger, captured_at = meta[0], struct.unpack(">I", meta[1:5])[0]
    at += 32
    frames, tags = [], []
    while sealed[at] == 0x46:
        index = sealed[at + 1]
        c, = struct.unpack(">I", sealed[at + 2:at + 6])
        iv = sealed[at + 6:at + 22]
        end = at + 22 + c
        tag = sealed[end:end + 32]
        if not hmac.compare_digest(hmac.new(k_mac, capture_id + sealed[at:end], "sha256").digest(), tag):
            raise CaptureRejected(f"tag of frame {index}")
        decryptor = Cipher(algorithms.AES(k_enc), modes.CBC(iv)).decryptor()
        plain = decryptor.update(sealed[at + 22:end]) + decryptor.finalize()
        pad = plain[-1]
        t, p = struct.unpack(">II", plain[:8])
        if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad or len(plain) - pad - 8 != p:
            raise CaptureRejected(f"padding of frame {index}")
        frames.append({"index": index, "t": t, "data": plain[8:-pad]})
        tags.append(tag)
        at = end + 32
    if sealed[at] != 0x45 or sealed[at + 1] != len(tags):
        raise CaptureRejected("end record frame count")
    end_mac = hmac.new(k_mac, capture_id + b"E" + bytes([len(tags)]) + b"".join(tags), "sha256").digest()
    if not hmac.compare_digest(end_mac, sealed[at + 2:at + 34]) or len(sealed) != at + 34:
        raise CaptureRejected("end record MAC")
    return {"trigger": trigger, "capture_id": capture_id, "captured_at": captured_at,
            "arc_key_id": key_id, "frames": frames}


def jpeg_like(rng: random.Random, size: int) -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(size - 13) + b"\xff\xd9"


SEAL_FILES = """
    import gc, sys, time, os
    from vericam.rsa_oaep import load_arc_key
    from vericam.seal import CaptureSealer, sealed_size
    arc = load_arc_key("{n}", {e}, "{key_id}")
    out_path, piece_size, frame_paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    piece = bytearray(piece_size)
    view = memoryview(piece)
    lengths = [os.stat(p)[6] for p in frame_paths]
    capture_id = os.urandom(16)
    slot_key = os.urandom(32)
    gc.collect()
    baseline = gc.mem_alloc()
    peak = 0
    started = time.ticks_us()
    with open(out_path, "wb") as sealed:
        sealer = CaptureSealer(arc.n, arc.e, arc.key_id, capture_id, 2, 1795300000, slot_key)
        gc.collect()
        sealed.write(sealer.header())
        header_peak = gc.mem_alloc() - baseline  # RSA big-int temporaries, freed at once
        for index, path in enumerate(frame_paths):
            with open(path, "rb") as camera:
                gc.collect()
                sealed.write(sealer.begin_frame(index, 1795300000 + index, lengths[index]))
                while True:
                    gc.collect()  # every step starts from the live set; what it allocates adds up
                    got = camera.readinto(piece)
                    if not got:
                        break
                    sealed.write(sealer.update(view[:got]))
                    peak = max(peak, gc.mem_alloc() - baseline)
                gc.collect()
                sealed.write(sealer.end_frame())
                peak = max(peak, gc.mem_alloc() - baseline)
        sealed.write(sealer.end())
    elapsed = time.ticks_diff(time.ticks_us(), started)
    print("capture_id", capture_id.hex())
    print("slot_key", slot_key.hex())
    print("sealed_size", sealed_size(lengths, arc.size))
    print("header_peak_bytes", header_peak)
    print("peak_bytes", max(peak, header_peak))
    print("frame_peak_bytes", peak)
    print("elapsed_us", elapsed)
"""


def seal_on_micropython(tmp_path: Path, frames: list[bytes], piece_size: int = 1024,
                        heapsize: str | None = None) -> tuple[bytes, dict]:
    paths = []
    for i, data in enumerate(frames):
        path = tmp_path / f"frame{i}.jpg"
        path.write_bytes(data)
        paths.append(str(path))
    out_path = tmp_path / "capture.sealed"
    script = SEAL_FILES.format(n=ARC_KEY["n"], e=ARC_KEY["e"], key_id=ARC_KEY["arc_key_id"])
    out = micropython(tmp_path, script, str(out_path), str(piece_size), *paths, heapsize=heapsize)
    figures = dict(line.split() for line in out.splitlines())
    return out_path.read_bytes(), figures


def test_a_capture_sealed_on_the_device_opens_at_the_arc_byte_identical(tmp_path):
    rng = random.Random(7)
    frames = [jpeg_like(rng, 60_000), jpeg_like(rng, 45_001), jpeg_like(rng, 4096)]
    sealed, figures = seal_on_micropython(tmp_path, frames)
    assert len(sealed) == int(figures["sealed_size"])
    with pytest.raises(CaptureRejected, match="header MAC"):  # the ARC key alone opens nothing
        open_capture(sealed, bytes(32))
    opened = open_capture(sealed, bytes.fromhex(figures["slot_key"]))
    assert opened["capture_id"].hex() == figures["capture_id"]
    assert (opened["trigger"], opened["captured_at"]) == (2, 1795300000)
    assert opened["arc_key_id"].hex() == ARC_KEY["arc_key_id"]
    assert [f["data"] for f in opened["frames"]] == frames
    assert [(f["index"], f["t"]) for f in opened["frames"]] == [(0, 1795300000), (1, 1795300001), (2, 1795300002)]
    for frame in frames:  # sealed at the lens: no run of JPEG bytes reaches the flash in the clear
        assert_no_plaintext(sealed, frame, "a frame in the sealed capture")


@pytest.mark.parametrize("piece_size", [1, 15, 17, 1000, 4096])
def test_any_piece_size_seals_the_same_frame(tmp_path, piece_size):
    frame = jpeg_like(random.Random(piece_size), 9_000)
    sealed, figures = seal_on_micropython(tmp_path, [frame], piece_size=piece_size)
    assert open_capture(sealed, bytes.fromhex(figures["slot_key"]))["frames"][0]["data"] == frame


def test_tampering_with_one_ciphertext_byte_fails_that_frames_tag(tmp_path):
    rng = random.Random(11)
    sealed, figures = seal_on_micropython(tmp_path, [jpeg_like(rng, 3000), jpeg_like(rng, 3000)])
    slot_key = bytes.fromhex(figures["slot_key"])
    first_frame = 34 + 256 + 32 + 32
    second_frame = first_frame + 22 + 3024 + 32
    for at, reason in ((first_frame + 22 + 1234, "tag of frame 0"),
                       (second_frame + 22 + 7, "tag of frame 1"),
                       (second_frame + 5, "tag of frame 1"),   # ciphertext length
                       (second_frame + 22, "tag of frame 1"),  # frame time, encrypted
                       (34 + 256 + 16 + 3, "header MAC"),      # trigger and capture time, encrypted
                       (40, "wrapped key")):                   # OAEP guards the wrapped key
        tampered = bytearray(sealed)
        tampered[at] ^= 0x01
        with pytest.raises(CaptureRejected, match=reason):
            open_capture(bytes(tampered), slot_key)


def test_dropping_the_last_frame_breaks_the_end_record(tmp_path):
    rng = random.Random(12)
    sealed, figures = seal_on_micropython(tmp_path, [jpeg_like(rng, 500), jpeg_like(rng, 500)])
    second_frame = 34 + 256 + 32 + 32 + 22 + 512 + 32
    end = sealed[-34:]
    truncated = sealed[:second_frame] + b"E\x01" + end[2:]
    with pytest.raises(CaptureRejected, match="end record"):
        open_capture(truncated, bytes.fromhex(figures["slot_key"]))


def test_sealing_a_60kb_frame_in_1kb_pieces_stays_small_in_ram(tmp_path):
    """The device never holds a frame: the heap is smaller than two frames, and the peak is ~1 piece."""
    frame = jpeg_like(random.Random(60), 60_000)
    sealed, figures = seal_on_micropython(tmp_path, [frame], piece_size=1024, heapsize="96k")
    assert open_capture(sealed, bytes.fromhex(figures["slot_key"]))["frames"][0]["data"] == frame
    peak = int(figures["peak_bytes"])
    seconds = int(figures["elapsed_us"]) / 1e6
    print(f"peak heap increase while sealing 60 KB in 1 KB pieces: {peak} bytes "
          f"(header with RSA wrap {figures['header_peak_bytes']}, per frame piece {figures['frame_peak_bytes']}); "
          f"sealing (incl. RSA wrap): {seconds * 1000:.1f} ms, {len(frame) / seconds / 1e6:.1f} MB/s")
    assert peak < 16 * 1024


def test_seal_throughput_against_raw_aes_and_sha256(tmp_path):
    """A benchmark: the sealer against bare cryptolib + hashlib on the same data, same run.

    It prints its figures and fails on none of them. What it asserts is that the timed sealer
    did the whole job: the capture it produced opens at the ARC to the very 1 MiB fed in."""
    piece = random.Random(1024).randbytes(1024)
    (tmp_path / "piece").write_bytes(piece)
    out = micropython(tmp_path, f"""
        import cryptolib, hashlib, os, sys, time
        from vericam.seal import CaptureSealer
        from vericam.rsa_oaep import load_arc_key
        arc = load_arc_key("{ARC_KEY['n']}", {ARC_KEY['e']})
        with open(sys.argv[1], "rb") as f:
            piece = f.read()
        pieces = 1024  # 1 MiB
        t0 = time.ticks_us()
        aes = cryptolib.aes(os.urandom(32), 2, os.urandom(16))
        digest = hashlib.sha256()
        for _ in range(pieces):
            digest.update(aes.encrypt(piece))
        raw = time.ticks_diff(time.ticks_us(), t0)
        slot_key = os.urandom(32)
        sealer = CaptureSealer(arc.n, arc.e, arc.key_id, os.urandom(16), 2, 0, slot_key)
        head = sealer.header()
        body = bytearray(pieces * len(piece))  # the ciphertext, kept for the ARC to open
        at = 0
        t0 = time.ticks_us()
        prefix = sealer.begin_frame(0, 0, pieces * len(piece))
        for _ in range(pieces):
            c = sealer.update(piece)
            body[at:at + len(c)] = c
            at += len(c)
        tail = sealer.end_frame()
        sealed = time.ticks_diff(time.ticks_us(), t0)
        with open(sys.argv[2], "wb") as f:
            for part in (head, prefix, memoryview(body)[:at], tail, sealer.end()):
                f.write(part)
        print(raw, sealed, slot_key.hex())
    """, str(tmp_path / "piece"), str(tmp_path / "bench.sealed"), heapsize="4m")
    raw, sealed, slot_key = out.split()
    raw_us, sealed_us = int(raw), int(sealed)
    print(f"seal 1 MiB in 1 KiB pieces: {sealed_us / 1000:.1f} ms ({1.048576 / (sealed_us / 1e6):.1f} MB/s); "
          f"bare AES-CBC+SHA-256: {raw_us / 1000:.1f} ms; ratio {sealed_us / raw_us:.2f}")
    opened = open_capture((tmp_path / "bench.sealed").read_bytes(), bytes.fromhex(slot_key))
    assert [f["data"] for f in opened["frames"]] == [piece * 1024]


def test_the_sealer_refuses_a_frame_that_differs_from_its_announced_length(tmp_path):
    out = micropython(tmp_path, f"""
        import os
        from vericam.rsa_oaep import load_arc_key
        from vericam.seal import CaptureSealer, SealError
        arc = load_arc_key("{ARC_KEY['n']}")
        for feed in (b"x" * 11, b"x" * 9):
            s = CaptureSealer(arc.n, arc.e, arc.key_id, os.urandom(16), 1, 0, os.urandom(32))
            s.header()
            s.begin_frame(0, 0, 10)
            try:
                s.update(feed)
                s.end_frame()
                print("sealed")
            except SealError:
                print("refused")
        s = CaptureSealer(arc.n, arc.e, arc.key_id, os.urandom(16), 1, 0, os.urandom(32))
        try:
            s.begin_frame(0, 0, 10)
            print("began")
        except SealError:
            print("refused")
    """)
    assert out.split() == ["refused", "refused", "refused"]


# ---- envelopes ---------------------------------------------------------------------------

def test_envelope_rejections_carry_the_reason_labels_of_the_spec(tmp_path):
    out = micropython(tmp_path, """
        from vericam.envelope import *
        from vericam.keys import DeviceKeys
        k = DeviceKeys(b"\\x01" * 32)
        topic = topic_for("cam-1", TYPE_RECEIPT)
        receipt = b"c" * 16 + bytes((RECEIPT_STORED, 2)) + b"h" * 32  # PROTOCOL section 8
        env = seal_envelope(k.down, topic, TYPE_RECEIPT, "cam-1", 7, 1795300000, receipt)
        def reason(mac_key, topic, payload):
            try:
                open_envelope(mac_key, topic, payload)
                return "accepted"
            except EnvelopeError as e:
                return e.reason
        print(reason(k.down, topic, env))
        print(reason(k.down, topic, env[:-1]))
        print(reason(k.down, topic, b"XC" + env[2:]))
        print(reason(k.down, topic_for("cam-2", TYPE_RECEIPT), env))
        print(reason(k.down, topic_for("cam-1", TYPE_TIME), env))
        print(reason(k.up, topic, env))  # reflected with the other direction's key
        # The bodies the device reads: a receipt or time body of the wrong size or an
        # unknown receipt status is malformed, never half-read.
        for parse, body in ((parse_receipt, receipt[:-1]), (parse_receipt, receipt[:16] + b"\\x03" + receipt[17:]),
                            (parse_time, b"\\x00" * 7), (parse_time, b"\\x00" * 8)):
            try:
                print("parsed", parse(body))
            except EnvelopeError as e:
                print(e.reason)
        print(parse_receipt(open_envelope(k.down, topic, env)[4]))
    """)
    assert out.splitlines() == [
        "accepted", "malformed", "malformed", "topic_mismatch", "topic_mismatch", "bad_mac",
        "malformed", "malformed", "malformed", "parsed 0",
        "(b'cccccccccccccccc', 0, 2, b'" + "h" * 32 + "')",
    ]


def test_envelope_mac_is_the_spec_hmac_over_topic_and_envelope(tmp_path):
    device_key = os.urandom(32)
    body = os.urandom(300)
    out = micropython(tmp_path, f"""
        from vericam.envelope import seal_envelope, chunk_header, TYPE_CAPTURE
        from vericam.keys import DeviceKeys
        k = DeviceKeys(bytes.fromhex("{device_key.hex()}"))
        body = bytes.fromhex("{body.hex()}")
        head = chunk_header(b"c" * 16, b"a" * 8, 1000, 0, 4)
        print(bytes(seal_envelope(k.up, "vc/v1/cam-7/up/capture", TYPE_CAPTURE, "cam-7", 2**40, 5, (head, body))).hex())
    """)
    envelope = bytes.fromhex(out.strip())
    topic = b"vc/v1/cam-7/up/capture"
    signed = envelope[:-32]
    k_up = hkdf(device_key, b"", b"vericam v1 up mac")
    assert envelope[-32:] == hmac.new(k_up, struct.pack(">H", len(topic)) + topic + signed, "sha256").digest()
    assert signed[:10] == b"VC\x01\x01\x05cam-7"
    assert struct.unpack(">QII", signed[10:26]) == (2**40, 5, 32 + 300)
    assert signed[26:] == b"c" * 16 + b"a" * 8 + struct.pack(">IHH", 1000, 0, 4) + body


def test_every_event_the_device_seals_has_the_same_size_and_decrypts_at_the_arc(tmp_path):
    # A disarm, a duress disarm and an alarm: encrypted after padding, one size on the wire
    # (PROTOCOL section 6); the gateway's decrypt_event reads the padded JSON as it is.
    from gateway.protocol.event import decrypt_event
    from gateway.protocol.keys import DeviceKeys as GatewayKeys

    device_key = os.urandom(32)
    events = [{"kind": "disarmed", "slot": 2, "duress": False, "alarm_id": "0123456789abcdef", "t": 1795299100},
              {"kind": "disarmed", "slot": 12, "duress": True, "alarm_id": "fedcba9876543210", "t": 1795299100},
              {"kind": "alarm", "code": "intrusion", "alarm_id": "5f1c00aa11bb22cc", "t": 1795300000},
              {"kind": "technical", "code": "clock_set", "t": 0}]
    out = micropython(tmp_path, f"""
        import json, os
        from vericam.envelope import EVENT_BUCKET, encrypt_event, pad_event
        from vericam.keys import DeviceKeys
        k = DeviceKeys(bytes.fromhex("{device_key.hex()}"))
        for ev in json.loads({json.dumps(json.dumps(events))}):
            print(encrypt_event(k.event, os.urandom(16), pad_event(json.dumps(ev).encode())).hex())
        print(len(pad_event(b"x" * EVENT_BUCKET)), len(pad_event(b"x" * (EVENT_BUCKET + 1))))
    """)
    lines = out.split()
    bodies = [bytes.fromhex(line) for line in lines[:-2]]
    assert {len(b) for b in bodies} == {16 + 256 + 16}
    keys = GatewayKeys.derive(device_key)
    assert [decrypt_event(keys.event, b) for b in bodies] == events
    assert lines[-2:] == ["256", "512"]


# ---- vectors -----------------------------------------------------------------------------

def run_checker(*dirs: Path):
    return run_micropython(CHECK_VECTORS, *(str(d) for d in dirs), timeout=120)


def test_firmware_vectors_check_on_micropython():
    done = run_checker(FIRMWARE_VECTORS)
    out = done.stdout.decode()
    print(out)
    assert done.returncode == 0, out + done.stderr.decode()
    kinds = {line.split("(")[-1].rstrip(")") for line in out.splitlines() if line.startswith("ok")}
    assert kinds == {"hmac", "hkdf", "envelope", "sealed_capture", "release"}


def test_gateway_vectors_check_on_micropython():
    if not GATEWAY_VECTORS.is_dir() or not any(GATEWAY_VECTORS.glob("*.json")):
        pytest.skip(f"no gateway vectors yet in {GATEWAY_VECTORS} (written by tools/make_vectors.py)")
    done = run_checker(GATEWAY_VECTORS)
    print(done.stdout.decode())
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_the_checker_fails_a_wrong_vector_and_skips_an_unknown_kind(tmp_path):
    shutil.copy(FIRMWARE_VECTORS / "envelope-event.json", tmp_path / "good.json")
    wrong = json.loads((FIRMWARE_VECTORS / "sealed-capture-two-frames.json").read_text())
    wrong["inputs"]["frames"][1]["t"] += 1
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    incomplete = json.loads((FIRMWARE_VECTORS / "hkdf-device-up.json").read_text())
    del incomplete["inputs"]["salt"]
    (tmp_path / "incomplete.json").write_text(json.dumps(incomplete))
    (tmp_path / "future.json").write_text(json.dumps({"name": "x25519-wrap", "kind": "x25519",
                                                      "inputs": {}, "output": ""}))
    done = run_checker(tmp_path)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 1
    assert "ok   envelope-event (envelope)" in lines
    assert any(line.startswith("FAIL sealed-capture-two-frames") for line in lines)
    assert any(line.startswith("FAIL hkdf-device-up: input") for line in lines)
    assert any(line.startswith("skip x25519-wrap") for line in lines)


def test_make_vectors_regenerates_byte_identical_files(tmp_path):
    done = run_micropython(MAKE_VECTORS, str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    made = sorted(p.name for p in tmp_path.glob("*.json"))
    committed = sorted(p.name for p in FIRMWARE_VECTORS.glob("*.json"))
    assert made == committed
    for name in made:
        assert (tmp_path / name).read_bytes() == (FIRMWARE_VECTORS / name).read_bytes(), name
    for name in made:  # plain JSON of the §10 shape, readable by the gateway's json.load
        vector = json.loads((tmp_path / name).read_text())
        assert set(vector) == {"name", "kind", "inputs", "output"} and vector["name"] + ".json" == name


def test_the_test_arc_key_is_consistent():
    private = arc_private_key()
    numbers = private.private_numbers()
    assert (format(numbers.public_numbers.n, "x"), numbers.public_numbers.e) == (ARC_KEY["n"], ARC_KEY["e"])
    assert numbers.p * numbers.q == numbers.public_numbers.n
    spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    assert hashlib.sha256(spki).hexdigest()[:16] == ARC_KEY["arc_key_id"]
    assert "TEST-ONLY" in ARC_KEY["warning"]


def test_the_firmware_vectors_open_with_independent_cpython_code():
    """What the gateway will do with them: the sealed capture opens, every envelope MAC verifies."""
    sealed = json.loads((FIRMWARE_VECTORS / "sealed-capture-two-frames.json").read_text())
    opened = open_capture(bytes.fromhex(sealed["output"]), bytes.fromhex(sealed["inputs"]["sk"]))
    assert [f["data"].hex() for f in opened["frames"]] == [f["data"] for f in sealed["inputs"]["frames"]]
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    for name in ("release-capture", "release-cover"):
        release = json.loads((FIRMWARE_VECTORS / f"{name}.json").read_text())
        inputs, record = release["inputs"], bytes.fromhex(release["output"])
        assert record[:5] == b"VREL\x02" and record[6:14].hex() == inputs["arc_key_id"]
        assert arc_private_key().decrypt(record[16:], oaep) == bytes([inputs["kind"], inputs["frames"]]) + \
            bytes.fromhex(inputs["capture_id"]) + bytes.fromhex(inputs["sk"])
    for path in sorted(FIRMWARE_VECTORS.glob("envelope-*.json")):
        vector = json.loads(path.read_text())
        inputs, envelope = vector["inputs"], bytes.fromhex(vector["output"])
        info = b"vericam v1 up mac" if inputs["type"] < 0x80 else b"vericam v1 down mac"
        key = hkdf(bytes.fromhex(inputs["device_key"]), b"", info)
        topic = inputs["topic"].encode()
        mac = hmac.new(key, struct.pack(">H", len(topic)) + topic + envelope[:-32], "sha256").digest()
        assert envelope[-32:] == mac, path.name
        assert envelope[-32 - len(bytes.fromhex(inputs["body"])):-32].hex() == inputs["body"]
