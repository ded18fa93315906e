"""Checks that plaintext does not appear where only ciphertext may be (a flash dump, the broker's bytes)."""

from __future__ import annotations

WINDOW = 64


def assert_no_plaintext(haystack: bytes, plaintext: bytes, what: str = "plaintext", window: int = WINDOW) -> None:
    """Fail if any `window`-byte slice of `plaintext`, at any offset, occurs anywhere in `haystack`.

    64 random bytes turn up in an n-byte haystack by chance with odds of about n / 2**512,
    so a hit is a leak, never luck (a 3-byte marker such as a JPEG's FF D8 FF is in 2 MB of
    ciphertext about one time in eight). The plaintext must not itself hold a run of 64
    equal bytes, which any haystack may hold too. A plaintext shorter than the window is
    looked for whole.

    How: any common run of `window` bytes holds a `window // 2`-byte block of the haystack
    that starts at a multiple of `window // 2`, and that block is one of the plaintext's
    half-windows. So the haystack is read at that stride against a table of every
    half-window of the plaintext, and each candidate is checked at full width."""
    haystack, plaintext = bytes(haystack), bytes(plaintext)
    if len(plaintext) <= window:
        assert plaintext not in haystack, f"{what} ({len(plaintext)} bytes) found whole"
        return
    half = window // 2
    starts: dict[bytes, list[int]] = {}
    for p in range(len(plaintext) - half + 1):
        starts.setdefault(plaintext[p:p + half], []).append(p)
    for j in range(0, len(haystack) - half + 1, half):
        for p in starts.get(haystack[j:j + half], ()):
            # A full window through this block starts up to `half` bytes before it.
            for back in range(half + 1):
                hs, ps = j - back, p - back
                if hs < 0 or ps < 0 or ps + window > len(plaintext) or hs + window > len(haystack):
                    continue
                if haystack[hs:hs + window] == plaintext[ps:ps + window]:
                    raise AssertionError(f"{what}: its {window} bytes at offset {ps} are at offset {hs} of the "
                                         f"{len(haystack)}-byte haystack")
