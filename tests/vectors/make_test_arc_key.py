"""Generating the TEST-ONLY ARC key pair of the test vectors (tests/vectors/test_arc_key.json).

Run once on CPython; the JSON is committed so that every vector uses the same key. This key
is public and used nowhere but the tests: never provision it on a device or a gateway.
"""

import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

OUT = Path(__file__).resolve().parent / "test_arc_key.json"


def main() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.private_numbers()
    public = numbers.public_numbers
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    doc = {
        "warning": "TEST-ONLY ARC key pair for the protocol test vectors. It is public: "
                   "never provision it on a device or a gateway.",
        "arc_key_id": hashlib.sha256(spki).hexdigest()[:16],
        "n": format(public.n, "x"),
        "e": public.e,
        "d": format(numbers.d, "x"),
        "p": format(numbers.p, "x"),
        "q": format(numbers.q, "x"),
        "private_key_pem": pem,
    }
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT} (arc_key_id {doc['arc_key_id']})")


if __name__ == "__main__":
    main()
