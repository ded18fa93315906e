"""What the tests share: device links, the CLI runner, seeding, plaintext checks, servers, cached scenarios.

Test modules import from here (`from support.cli import vericam`), never from one another.
The host-side fake device itself is `simulator.fake_device.FakeDevice`: the benchmarks and
the fuzzer use it too, and they ship in the wheel, where `tests/` is not.
"""
