"""Benchmarks, fuzzers and time-travel simulations of every part, each against a baseline measured in the same run."""
