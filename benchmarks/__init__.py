"""Benchmarks, each measured as a ratio against a peer timed interleaved in the same run."""
