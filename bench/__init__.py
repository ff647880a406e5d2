"""Benchmark suite for the relay: `python -m bench` (see bench/README.md).

Starts everything it measures on loopback (a fast sink, a bare Litestar app,
`relay serve` subprocesses), drives them with wrk when installed or a Python
load generator otherwise, and prints one table of ratios measured in the same
run. Never imported by the relay nor by its tests.
"""
